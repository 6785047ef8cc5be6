"""One recording in, serialized tf.train.Examples and dead letters out: the job's core, free of Beam.

A `RecordingTask` is what the driver ships per recording (its id, path, fold and CSV rows, no audio).
`process_train` / `process_test` validate the rows, call `load()` for the file's bytes only when
some row needs the audio, decode, crop and serialize examples with `schema.serialize_example`
(protobuf only, no TensorFlow import):

    outcome = process_train(task, load=lambda: open(task.path, "rb").read(), cfg=shards_config)
    outcome.examples     # [BuiltExample(fold, species_id, serialized)]
    outcome.rejections   # [labels.Rejection]; every CSV row of the task is in exactly one of the two

`load` raises `audio.AudioError` (reason "missing_flac" etc.) when the file cannot be read.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from pipeline import audio as audio_lib
from pipeline import crop, labels, schema
from pipeline.config import ShardsConfig

TRAIN = "train"
TEST = "test"
NO_FOLD = -1  # test recordings and recordings with fp rows only


@dataclasses.dataclass(frozen=True)
class RecordingTask:
    """One recording to process: small (no audio), built by the driver from the CSVs and file listing."""

    kind: str  # TRAIN | TEST
    recording_id: str
    path: str
    fold: int = NO_FOLD
    rows: tuple[labels.CsvRow, ...] = ()  # tp and fp rows of this recording (train only)


@dataclasses.dataclass(frozen=True)
class BuiltExample:
    """A serialized tf.train.Example with what the writer routes and counts it by."""

    fold: int  # NO_FOLD for test examples
    species_id: int  # the event's species; -1 for test examples
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


def train_example_values(recording_id: str, decoded: audio_lib.DecodedAudio, event: labels.Box,
                         boxes: list[labels.Box], fold: int, cfg: ShardsConfig) -> dict:
    """Values of schema.TRAIN_FIELDS for the slice around `event`; `boxes` are all valid tp+fp boxes."""
    sr = decoded.sample_rate
    start, end = crop.slice_bounds(event.t_min, event.t_max, sr, cfg.slice_samples, decoded.num_samples)
    start_s, end_s = start / sr, end / sr
    inside = [b for b in boxes if crop.overlaps(b.t_min, b.t_max, start_s, end_s)]
    multi_hot = np.zeros(cfg.num_classes, np.float32)
    known = np.zeros(cfg.num_classes, np.float32)  # schema v2 (stopgap until the i7 writer lands)
    for b in inside:
        known[b.species_id] = 1.0
        if b.is_tp:
            multi_hot[b.species_id] = 1.0
    return {
        **_common_values(recording_id, decoded, decoded.samples[start:end]),
        "row_index": event.row_index,
        "recording_num_samples": decoded.num_samples,
        "slice_start": start,
        "fold": fold,
        "event/species_id": event.species_id,
        "event/songtype_id": event.songtype_id,
        "event/t_min": event.t_min - start_s,
        "event/t_max": event.t_max - start_s,
        "event/f_min": event.f_min,
        "event/f_max": event.f_max,
        "boxes/species_id": [b.species_id for b in inside],
        "boxes/songtype_id": [b.songtype_id for b in inside],
        "boxes/t_min": [b.t_min - start_s for b in inside],
        "boxes/t_max": [b.t_max - start_s for b in inside],
        "boxes/f_min": [b.f_min for b in inside],
        "boxes/f_max": [b.f_max for b in inside],
        "boxes/is_tp": [int(b.is_tp) for b in inside],
        "labels": multi_hot,
        "label_known": known,
        "kind": schema.KIND_TP,
    }


def _reject_all(rows: list[labels.CsvRow], reason: str, detail: str) -> list[labels.Rejection]:
    return [labels.reject_row(r, reason, detail) for r in rows]


def process_train(task: RecordingTask, load: Callable[[], bytes], cfg: ShardsConfig) -> Outcome:
    """Examples for the task's valid tp rows; every other row becomes a Rejection with its reason."""
    valid, rejected = labels.validate_rows(task.rows, cfg.num_classes)
    out = Outcome(rejections=rejected)
    if not valid:
        return out  # nothing needs the audio
    has_tp = any(box.is_tp for _, box in valid)
    try:
        data = load()
        if has_tp:
            out.audio = audio_lib.decode_pcm16(data, cfg.sample_rate, cfg.max_recording_seconds)
            duration_s = out.audio.num_samples / cfg.sample_rate
        else:
            # fp rows only: the stream's length is enough to check them, keep no audio.
            frames, source_sr = audio_lib.probe(data, cfg.max_recording_seconds)
            duration_s = frames / source_sr
    except audio_lib.AudioError as e:
        out.file_error = e
        out.rejections += _reject_all([row for row, _ in valid], e.reason, f"{task.path}: {e.detail}")
        return out
    boxes = []
    for row, box in valid:
        detail = labels.outside_recording(box, duration_s, cfg.sample_rate)
        if detail:
            out.rejections.append(labels.reject_row(row, labels.EVENT_OUTSIDE_RECORDING, detail))
        else:
            boxes.append(box)
    for event in boxes:
        if event.is_tp:
            values = train_example_values(task.recording_id, out.audio, event, boxes, task.fold, cfg)
            serialized = schema.serialize_example(schema.TRAIN_FIELDS, values)
            out.examples.append(BuiltExample(task.fold, event.species_id, serialized))
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
    out.examples.append(BuiltExample(NO_FOLD, -1, schema.serialize_example(schema.TEST_FIELDS, values)))
    return out


def process(task: RecordingTask, load: Callable[[], bytes], cfg: ShardsConfig) -> Outcome:
    """Dispatches on task.kind."""
    return (process_train if task.kind == TRAIN else process_test)(task, load, cfg)


def failed(task: RecordingTask, error: BaseException) -> Outcome:
    """The outcome of a recording whose processing raised `error` (not an AudioError): every row of
    a train task, or the test file, becomes a dead letter `worker_error` naming the exception type."""
    kind = type(error).__name__
    detail = f"{task.path}: {kind}: {error}"
    out = Outcome(file_error=audio_lib.AudioError(labels.WORKER_ERROR, f"{kind}: {error}"))
    if task.kind == TEST:
        out.rejections.append(labels.Rejection(TEST, None, task.recording_id, labels.WORKER_ERROR, detail,
                                               path=task.path, error_type=kind))
    else:
        out.rejections = [labels.reject_row(r, labels.WORKER_ERROR, detail, error_type=kind) for r in task.rows]
    return out
