"""Beam wiring of the per-recording work: DoFn, counters, tagged outputs. The logic is in pipeline.examples.

Kept apart from pipeline.shards (the driver) so that nothing a worker unpickles lives in `__main__`
when the job is started with `python -m pipeline.shards`.

    outputs = tasks | beam.ParDo(ProcessRecording(cfg)).with_outputs(REJECTED_TAG, main=EXAMPLES_TAG)
    outputs[EXAMPLES_TAG]  # ((fold, kind), serialized Example); (-1, "test") for test examples
    outputs[REJECTED_TAG]  # JSON line per rejected row, background slice or file
    outputs[EXAMPLES_TAG] | tfrecord_sink.WriteShards(shard_destinations(cfg, out), temp_root=out)
"""
from __future__ import annotations

import logging
import os
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics

from core import fs, progress, schema
from core import manifest as layout
from pipeline import audio as audio_lib
from pipeline import examples, file_guard, labels, tfrecord_sink
from pipeline.config import ShardsConfig

NAMESPACE = "rfcx_shards"
EXAMPLES_TAG = "examples"
REJECTED_TAG = "rejected"

# Counter names (read back by the driver from the PipelineResult).
TRAIN_EXAMPLES = "train_examples"
TEST_EXAMPLES = "test_examples"
RECORDINGS_DECODED = "recordings_decoded"
RECORDINGS_RESAMPLED = "recordings_resampled"
RECORDINGS_DOWNMIXED = "recordings_downmixed"
CLIPPED_SAMPLES = "clipped_samples"
NONFINITE_SAMPLES = "nonfinite_samples"
HEADER_LENGTH_MISMATCH = "header_length_mismatch"  # recordings whose header length != the stream's
HEADER_LENGTH_UNKNOWN = "header_length_unknown"  # FLACs whose STREAMINFO says 0 ("unknown")
RECORDINGS_FAILED = "recordings_failed"  # recordings whose processing raised (worker_error)
RECORDINGS_PROCESSED = "recordings_processed"  # every task done, whatever its outcome: the job's progress
# What decoding noticed about the audio (manifest counts["audio"]).
AUDIO_NOTES = (NONFINITE_SAMPLES, HEADER_LENGTH_MISMATCH, HEADER_LENGTH_UNKNOWN)


def fold_counter(fold: int) -> str:
    """Train examples of every kind in `fold`."""
    return f"train_examples_fold_{fold}"


def kind_counter(kind: str) -> str:
    """Train examples of one slice kind, all folds."""
    return f"train_examples_{kind}"


def fold_kind_counter(fold: int, kind: str) -> str:
    return f"train_examples_fold_{fold}_{kind}"


def species_counter(species: int, kind: str = schema.KIND_TP) -> str:
    """tp (or fp) examples whose event is of `species`."""
    return f"train_examples_species_{species}" if kind == schema.KIND_TP else f"{kind}_examples_species_{species}"


def rejected_counter(kind: str, reason: str) -> str:
    return f"rejected_{kind}_{reason}"


def bad_file_counter(reason: str) -> str:
    return f"bad_file_{reason}"


def read_bytes(path: str) -> bytes:
    """Whole file through core.fs (local or gs://); AudioError("missing_flac") if absent."""
    try:
        return fs.read_bytes(path)
    except OSError as e:
        raise audio_lib.AudioError(labels.MISSING_FLAC, f"cannot read {path}: {e}") from e


def shard_destinations(cfg: ShardsConfig, out: str) -> dict[tuple[int, str], tfrecord_sink.Destination]:
    """Where each example key goes: (fold, kind) -> OUT/train/fold-K/<kind> files, one kind of one
    fold per file set (a reader gets one kind of one fold without scanning the others), and
    (NO_FOLD, "test") -> OUT/test/test files."""
    train = {(k, kind): tfrecord_sink.Destination(fs.join(out, layout.train_prefix(k, kind)), cfg.max_train_fill_bytes)
             for k in range(cfg.num_folds) for kind in schema.SLICE_KINDS}
    test = tfrecord_sink.Destination(fs.join(out, layout.TEST_PREFIX), cfg.max_test_fill_bytes)
    return {**train, (examples.NO_FOLD, examples.TEST): test}


class ProcessRecording(beam.DoFn):
    """RecordingTask -> ((fold, kind), serialized Example) | rejected JSON lines, with a counter per outcome."""

    def __init__(self, cfg: ShardsConfig, total: int = 0, processes: int | None = 1):
        # total: the job's recordings (the driver knows them), for the progress lines; 0: none.
        # processes: worker processes sharing them (core.progress.ProgressReporter).
        # Workers never import TensorFlow: examples are serialized with the protobuf runtime
        # (schema.serialize_example).
        self._cfg, self._total, self._processes = cfg, total, processes
        self._job = uuid.uuid4().hex  # one progress count per job, whichever DoFn instance counts
        self._driver_pid = os.getpid()
        self._progress: progress.ProgressReporter | None = None

    def setup(self):
        if self._total and self._cfg.progress_seconds > 0:
            # A DirectRunner worker in a process of its own (multi_processing) writes to the stderr it
            # shares with the driver; Dataflow's (processes None) log through the runner.
            own_process = self._processes is not None and os.getpid() != self._driver_pid
            self._progress = progress.shared(self._job, self._total, self._cfg.progress_seconds, self._processes,
                                             to_stderr=own_process)

    @staticmethod
    def _inc(name: str, n: int = 1) -> None:
        if n:
            Metrics.counter(NAMESPACE, name).inc(n)

    def process(self, task: examples.RecordingTask):
        try:
            # Checked before it is opened: kind, size, where a symlink leads (pipeline.file_guard).
            outcome = examples.process(task, lambda: read_bytes(file_guard.checked(task.path, self._cfg)), self._cfg)
        except Exception as e:  # pylint: disable=broad-except
            # One odd recording must not stop the job: whatever it raised becomes its dead letters
            # (the driver still stops a job in which every recording failed: that is a bug).
            logging.exception("recording %s failed (%s); its rows become dead letters", task.path,
                              type(e).__name__)
            self._inc(RECORDINGS_FAILED)
            outcome = examples.failed(task, e)
        if outcome.file_error is not None:
            logging.warning("bad file %s: %s", task.path, outcome.file_error)
            self._inc(bad_file_counter(outcome.file_error.reason))
        decoded = outcome.audio
        if decoded is not None:
            self._inc(RECORDINGS_DECODED)
            self._inc(RECORDINGS_RESAMPLED, int(decoded.resampled))
            self._inc(RECORDINGS_DOWNMIXED, int(decoded.source_channels > 1))
            self._inc(CLIPPED_SAMPLES, decoded.clipped_samples)
            self._inc(NONFINITE_SAMPLES, decoded.nonfinite_samples)
            self._inc(HEADER_LENGTH_MISMATCH, int(decoded.header_length_mismatch))
            self._inc(HEADER_LENGTH_UNKNOWN, int(decoded.header_frames is None))
        for ex in outcome.examples:
            if task.kind == examples.TEST:
                self._inc(TEST_EXAMPLES)
            else:
                self._inc(TRAIN_EXAMPLES)
                self._inc(kind_counter(ex.kind))
                self._inc(fold_counter(ex.fold))
                self._inc(fold_kind_counter(ex.fold, ex.kind))
                if ex.kind != schema.KIND_BACKGROUND:
                    self._inc(species_counter(ex.species_id, ex.kind))
            yield (ex.fold, ex.kind), ex.serialized
        for rej in outcome.rejections:
            self._inc(rejected_counter(rej.kind, rej.reason))
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, rej.to_json())
        self._inc(RECORDINGS_PROCESSED)
        if self._progress is not None:
            self._progress.step()
