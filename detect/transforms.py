"""Beam wiring of the detection job: DoFns, named counters, the tagged dead-letter output. The logic is in
detect.scoring (audio -> window scores), detect.tables (tables) and detect.layout (files).

    results = tasks | beam.ParDo(ScoreRecording(cfg, meta, stride, thresholds)).with_outputs(REJECTED, main=DONE)
    earlier = complete_ids | beam.ParDo(ReadPart(cfg.out, thresholds))
    (results.done, earlier) | beam.Flatten() | beam.combiners.ToList() | beam.ParDo(WriteTables(...))
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from typing import Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from core import export_layout, fs, progress
from detect import layout, scoring, tables
from detect import model as exported
from detect.config import DetectConfig
from detect.listing import DUPLICATE_ID, Recording
from pipeline import audio, file_guard

NAMESPACE = "detect"
DONE, REJECTED = "done", "rejected"
# Counters (their sum is checked by the driver: listed = scored + complete_before + rejected).
SCORED, REJECTED_COUNT, COMPLETE_BEFORE = "recordings_scored", "recordings_rejected", "recordings_complete_before"
WINDOWS_SCORED, AUDIO_MS, DETECTIONS = "windows_scored", "audio_ms_scored", "detections"
UNREADABLE = "unreadable"
WORKER_ERROR = "worker_error"  # any other exception while scoring one recording

log = logging.getLogger(__name__)


def rejected_counter(reason: str) -> str:
    return f"rejected_{reason}"


def _inc(name: str, n: int = 1) -> None:
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


@dataclasses.dataclass(frozen=True)
class RecordingResult:
    """What the final step needs of one complete recording: its detection rows and max score per species [C]."""

    recording_id: str
    rows: tuple
    max_scores: np.ndarray


def dead_letter(rec: Recording, reason: str, detail: str) -> str:
    return json.dumps({"recording_id": rec.recording_id, "path": rec.path, "reason": reason, "detail": detail},
                      sort_keys=True)


class ScoreRecording(beam.DoFn):
    """(Recording, duplicate) -> RecordingResult after writing its Raven table then its part | dead letter."""

    def __init__(self, cfg: DetectConfig, meta: export_layout.ExportMetadata, stride: int,
                 thresholds: Sequence[float], total: int = 0, processes: int | None = 1):
        self._cfg, self._meta, self._stride, self._thresholds = cfg, meta, stride, list(thresholds)
        self._total, self._processes = total, processes
        self._job, self._driver_pid = uuid.uuid4().hex, os.getpid()
        self._model = None
        self._progress: progress.ProgressReporter | None = None

    def setup(self):
        # TensorFlow is imported here, on the worker (detect.model imports it lazily), its thread pools
        # sized to this process's share of the cores, and the model loaded once per process.
        exported.limit_threads(exported.threads_per_process(self._processes, self._cfg.tf_threads))
        self._model = exported.shared(self._cfg.model, self._meta)
        if self._total and self._cfg.progress_seconds > 0:
            own_process = self._processes is not None and os.getpid() != self._driver_pid
            self._progress = progress.shared(self._job, self._total, self._cfg.progress_seconds, self._processes,
                                             to_stderr=own_process)

    def _read(self, rec: Recording) -> np.ndarray:
        path = file_guard.checked_path(rec.path, self._cfg.audio, self._cfg.max_recording_seconds)
        try:
            data = fs.read_bytes(path)
        except OSError as e:
            raise audio.AudioError(UNREADABLE, f"cannot read {path}: {e}") from e
        return scoring.waveform(data, self._meta.sample_rate, self._cfg.channel, self._cfg.max_recording_seconds)

    def process(self, element: tuple[Recording, bool]) -> Iterator:
        rec, duplicate = element
        try:
            if duplicate:
                raise audio.AudioError(DUPLICATE_ID, f"another file has the recording id {rec.recording_id!r}; "
                                                     f"rename one of them")
            y = self._read(rec)
            ws = scoring.score_recording(rec.recording_id, y, self._model, self._meta.window_samples, self._stride,
                                         self._meta.sample_rate, self._cfg.batch_size, self._cfg.embeddings)
            rows = tables.detection_rows(ws, self._thresholds)
            channel = 1 if self._cfg.channel is None else self._cfg.channel + 1
            # The Raven table first, the part last: a part on disk means the recording is complete.
            layout.write_atomically(layout.raven_path(self._cfg.out, rec.recording_id), tables.raven_table(
                rows, self._meta.species, self._meta.sample_rate / 2, channel).encode())
            layout.write_atomically(layout.part_path(self._cfg.out, rec.recording_id), layout.part_bytes(ws))
        except audio.AudioError as e:
            yield self._reject(rec, e.reason, e.detail)
            return
        except Exception as e:  # one bad recording must not fail the job; the dead letter says what happened
            log.exception("recording %s failed", rec.path)
            yield self._reject(rec, WORKER_ERROR, f"{type(e).__name__}: {e}")
            return
        finally:
            if self._progress is not None:
                self._progress.step()
        _inc(SCORED)
        _inc(WINDOWS_SCORED, len(ws.start_s))
        _inc(AUDIO_MS, int(round(len(y) / self._meta.sample_rate * 1000)))
        _inc(DETECTIONS, len(rows))
        yield RecordingResult(rec.recording_id, tuple(rows), ws.max_scores())

    @staticmethod
    def _reject(rec: Recording, reason: str, detail: str):
        _inc(REJECTED_COUNT)
        _inc(rejected_counter(reason))
        return beam.pvalue.TaggedOutput(REJECTED, dead_letter(rec, reason, detail))


class ReadPart(beam.DoFn):
    """Recording id complete before this run -> RecordingResult from its part file (nothing recomputed)."""

    def __init__(self, out: str, thresholds: Sequence[float]):
        self._out, self._thresholds = out, list(thresholds)

    def process(self, recording_id: str) -> Iterator[RecordingResult]:
        ws = layout.read_part(layout.part_path(self._out, recording_id))
        ws = dataclasses.replace(ws, recording_id=recording_id)
        _inc(COMPLETE_BEFORE)
        yield RecordingResult(recording_id, tuple(tables.detection_rows(ws, self._thresholds)), ws.max_scores())


class WriteTables(beam.DoFn):
    """All RecordingResults (one list) -> OUT/detections.csv, and OUT/submission.csv with --test_layout."""

    def __init__(self, out: str, num_classes: int, submission_ids: Sequence[str] | None):
        self._out, self._num_classes = out, num_classes
        self._submission_ids = list(submission_ids) if submission_ids is not None else None

    def process(self, results: list[RecordingResult]) -> Iterator[str]:
        started = time.monotonic()
        frame = tables.detections_frame([row for r in results for row in r.rows])
        layout.write_atomically(fs.join(self._out, layout.DETECTIONS), frame.to_csv(index=False).encode())
        if self._submission_ids is not None:
            scores = {r.recording_id: r.max_scores for r in results}
            missing = [i for i in self._submission_ids if i not in scores]
            if not missing:  # else the driver reports the ids without scores; no partial submission
                sub = tables.submission_frame(scores, self._submission_ids, self._num_classes)
                layout.write_atomically(fs.join(self._out, layout.SUBMISSION), sub.to_csv(index=False).encode())
        log.info("tables of %d recordings written in %.1f s", len(results), time.monotonic() - started)
        yield fs.join(self._out, layout.DETECTIONS)
