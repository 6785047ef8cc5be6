"""One recording in, serialized tf.train.Examples and dead letters out: the job's core, free of Beam.

A `RecordingTask` is what the driver ships per recording (its id, path, fold, CSV rows and number
of background slices; no audio). `process_train` / `process_test` validate the rows, call `load()`
for the file's bytes only when something needs the audio, decode, crop and serialize examples with
`schema.serialize_example` (protobuf only, no TensorFlow import):

    outcome = process_train(task, load=lambda: open(task.path, "rb").read(), cfg=shards_config)
    outcome.examples     # [BuiltExample(fold, kind, species_id, serialized)]
    outcome.rejections   # [labels.Rejection]

Every CSV row of the task ends in exactly one of the two (a tp or fp slice, or a dead letter), and so
does each of its `num_background` background slices (a slice, or a dead letter of kind "background":
no room for it, or the file's reason).

`load` raises `audio.AudioError` (reason "missing_flac" etc.) when the file cannot be read.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from core import crop, schema
from pipeline import audio as audio_lib
from pipeline import labels
from pipeline.config import ShardsConfig

TRAIN = "train"
TEST = "test"
NO_FOLD = -1  # test recordings
NO_ROOM_FOR_BACKGROUND = "no_room_for_background"  # dead-letter reason of a background slice


@dataclasses.dataclass(frozen=True)
class RecordingTask:
    """One recording to process: small (no audio), built by the driver from the CSVs and file listing."""

    kind: str  # TRAIN | TEST
    recording_id: str
    path: str
    fold: int = NO_FOLD
    rows: tuple[labels.CsvRow, ...] = ()  # tp and fp rows of this recording (train only)
    num_background: int = 0  # background slices to draw (train only)


@dataclasses.dataclass(frozen=True)
class BuiltExample:
    """A serialized tf.train.Example with what the writer routes and counts it by."""

    fold: int  # NO_FOLD for test examples
    kind: str  # schema.SLICE_KINDS, or TEST
    species_id: int  # the event's species; -1 for background and test examples
    serialized: bytes


@dataclasses.dataclass
class Outcome:
    """Result of processing one recording."""

    examples: list[BuiltExample] = dataclasses.field(default_factory=list)
    rejections: list[labels.Rejection] = dataclasses.field(default_factory=list)
    file_error: audio_lib.AudioError | None = None
    audio: audio_lib.DecodedAudio | None = None


def _common_values(recording_id: str, decoded: audio_lib.DecodedAudio, samples: np.ndarray) -> dict:
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "recording_id": recording_id,
        "audio": schema.pcm16_to_bytes(samples),
        "sample_rate": decoded.sample_rate,
        "num_samples": int(samples.shape[0]),
        "source/sample_rate": decoded.source_sample_rate,
        "source/channels": decoded.source_channels,
        "source/resampled": int(decoded.resampled),
        "source/clipped_samples": decoded.clipped_samples,
        "source/nonfinite_samples": decoded.nonfinite_samples,
    }


def slice_values(recording_id: str, decoded: audio_lib.DecodedAudio, start: int, end: int,
                 event: labels.Box | None, boxes: Sequence[labels.Box], fold: int, num_classes: int) -> dict:
    """Values of schema.TRAIN_FIELDS for samples [start, end) of a recording.

    `event` is the row the slice was cut for (None: a background slice); `boxes` are all valid tp and
    fp boxes of the recording. labels[c] = 1 when a tp box of c overlaps the slice; label_known[c] = 1
    when a tp or fp box of c does (so a species with both is positive and known).
    """
    sr = decoded.sample_rate
    start_s, end_s = start / sr, end / sr
    inside = [b for b in boxes if crop.overlaps(b.t_min, b.t_max, start_s, end_s)]
    positive = np.zeros(num_classes, np.float32)
    known = np.zeros(num_classes, np.float32)
    for b in inside:
        known[b.species_id] = 1.0
        if b.is_tp:
            positive[b.species_id] = 1.0
    if event is None:
        kind, row_index, species, songtype = schema.KIND_BACKGROUND, schema.NO_ROW, -1, -1
        t_min, t_max, f_min, f_max = 0.0, (end - start) / sr, 0.0, 0.0
    else:
        kind = schema.KIND_TP if event.is_tp else schema.KIND_FP
        row_index, species, songtype = event.row_index, event.species_id, event.songtype_id
        t_min, t_max, f_min, f_max = event.t_min - start_s, event.t_max - start_s, event.f_min, event.f_max
    return {
        **_common_values(recording_id, decoded, decoded.samples[start:end]),
        "kind": kind,
        "row_index": row_index,
        "recording_num_samples": decoded.num_samples,
        "slice_start": start,
        "fold": fold,
        "event/species_id": species,
        "event/songtype_id": songtype,
        "event/t_min": t_min,
        "event/t_max": t_max,
        "event/f_min": f_min,
        "event/f_max": f_max,
        "boxes/species_id": [b.species_id for b in inside],
        "boxes/songtype_id": [b.songtype_id for b in inside],
        "boxes/t_min": [b.t_min - start_s for b in inside],
        "boxes/t_max": [b.t_max - start_s for b in inside],
        "boxes/f_min": [b.f_min for b in inside],
        "boxes/f_max": [b.f_max for b in inside],
        "boxes/is_tp": [int(b.is_tp) for b in inside],
        "labels": positive,
        "label_known": known,
    }


def train_example_values(recording_id: str, decoded: audio_lib.DecodedAudio, event: labels.Box,
                         boxes: Sequence[labels.Box], fold: int, cfg: ShardsConfig) -> dict:
    """Values of the tp or fp slice around `event` (centred on its box, clamped: crop.slice_bounds)."""
    start, end = crop.slice_bounds(event.t_min, event.t_max, decoded.sample_rate, cfg.slice_samples,
                                   decoded.num_samples)
    return slice_values(recording_id, decoded, start, end, event, boxes, fold, cfg.num_classes)


def background_starts(recording_id: str, num_samples: int, tp_boxes: Sequence[labels.Box], count: int,
                      cfg: ShardsConfig) -> list[int]:
    """Up to `count` distinct starts of slices overlapping no box of `tp_boxes`, from (fold_seed, id)."""
    free = crop.free_starts(num_samples, cfg.slice_samples, cfg.sample_rate,
                            [(b.t_min, b.t_max) for b in tp_boxes])
    return crop.draw_starts(free, count, crop.background_rng(cfg.fold_seed, recording_id))


def _reject_all(rows: list[labels.CsvRow], reason: str, detail: str) -> list[labels.Rejection]:
    return [labels.reject_row(r, reason, detail) for r in rows]


def _reject_background(task: RecordingTask, first: int, reason: str, detail: str) -> list[labels.Rejection]:
    """Dead letters for the task's background slices first..num_background-1."""
    return [labels.Rejection(schema.KIND_BACKGROUND, None, task.recording_id, reason,
                             f"background slice {i + 1} of {task.num_background}: {detail}", path=task.path)
            for i in range(first, task.num_background)]


def process_train(task: RecordingTask, load: Callable[[], bytes], cfg: ShardsConfig) -> Outcome:
    """A tp or fp slice per valid row and the task's background slices; everything else a Rejection."""
    valid, rejected = labels.validate_rows(task.rows, cfg.num_classes)
    out = Outcome(rejections=rejected)
    if not labels.is_safe_id(task.recording_id):  # its rows are bad_recording_id; never open its "file"
        out.rejections += _reject_background(task, 0, labels.BAD_RECORDING_ID, "unsafe recording id")
        return out
    if not valid and not task.num_background:
        return out  # nothing needs the audio
    try:
        out.audio = audio_lib.decode_pcm16(load(), cfg.sample_rate, cfg.max_recording_seconds)
    except audio_lib.AudioError as e:
        out.file_error = e
        detail = f"{task.path}: {e.detail}"
        out.rejections += _reject_all([row for row, _ in valid], e.reason, detail)
        out.rejections += _reject_background(task, 0, e.reason, detail)
        return out
    duration_s = out.audio.num_samples / cfg.sample_rate
    boxes = []
    nyquist_rate = min(out.audio.source_sample_rate, cfg.sample_rate)
    for row, box in valid:
        detail = labels.outside_recording(box, duration_s, cfg.sample_rate)
        band = labels.above_nyquist(box, nyquist_rate)
        if detail:
            out.rejections.append(labels.reject_row(row, labels.EVENT_OUTSIDE_RECORDING, detail))
        elif band:
            out.rejections.append(labels.reject_row(row, labels.BAD_FREQUENCY, band))
        else:
            boxes.append(box)
    for event in boxes:  # tp rows first, then fp rows (the driver's order)
        values = train_example_values(task.recording_id, out.audio, event, boxes, task.fold, cfg)
        kind = schema.KIND_TP if event.is_tp else schema.KIND_FP
        out.examples.append(BuiltExample(task.fold, kind, event.species_id,
                                         schema.serialize_example(schema.TRAIN_FIELDS, values)))
    n = out.audio.num_samples
    starts = background_starts(task.recording_id, n, [b for b in boxes if b.is_tp], task.num_background, cfg)
    for start in starts:
        values = slice_values(task.recording_id, out.audio, start, min(start + cfg.slice_samples, n), None,
                              boxes, task.fold, cfg.num_classes)
        out.examples.append(BuiltExample(task.fold, schema.KIND_BACKGROUND, -1,
                                         schema.serialize_example(schema.TRAIN_FIELDS, values)))
    if len(starts) < task.num_background:
        out.rejections += _reject_background(
            task, len(starts), NO_ROOM_FOR_BACKGROUND,
            f"only {len(starts)} distinct {cfg.slice_seconds:g} s windows of the {duration_s:.3f} s recording "
            f"overlap none of its {sum(b.is_tp for b in boxes)} tp boxes")
    return out


def process_test(task: RecordingTask, load: Callable[[], bytes], cfg: ShardsConfig) -> Outcome:
    """One example holding the whole recording, or a Rejection of kind "test" naming the file."""
    out = Outcome()
    try:
        out.audio = audio_lib.decode_pcm16(load(), cfg.sample_rate, cfg.max_recording_seconds)
    except audio_lib.AudioError as e:
        out.file_error = e
        out.rejections.append(labels.Rejection(TEST, None, task.recording_id, e.reason, e.detail, path=task.path))
        return out
    values = _common_values(task.recording_id, out.audio, out.audio.samples)
    out.examples.append(BuiltExample(NO_FOLD, TEST, -1, schema.serialize_example(schema.TEST_FIELDS, values)))
    return out


def process(task: RecordingTask, load: Callable[[], bytes], cfg: ShardsConfig) -> Outcome:
    """Dispatches on task.kind."""
    return (process_train if task.kind == TRAIN else process_test)(task, load, cfg)


def failed(task: RecordingTask, error: BaseException) -> Outcome:
    """The outcome of a recording whose processing raised `error` (not an AudioError): every row and
    background slice of a train task, or the test file, becomes a dead letter `worker_error` naming
    the exception type."""
    kind = type(error).__name__
    detail = f"{task.path}: {kind}: {error}"
    out = Outcome(file_error=audio_lib.AudioError(labels.WORKER_ERROR, f"{kind}: {error}"))
    if task.kind == TEST:
        out.rejections.append(labels.Rejection(TEST, None, task.recording_id, labels.WORKER_ERROR, detail,
                                               path=task.path, error_type=kind))
    else:
        out.rejections = [labels.reject_row(r, labels.WORKER_ERROR, detail, error_type=kind) for r in task.rows]
        out.rejections += [dataclasses.replace(r, error_type=kind)
                           for r in _reject_background(task, 0, labels.WORKER_ERROR, detail)]
    return out
