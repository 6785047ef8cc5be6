"""Reads the test recordings (whole, one example each) back from a shards directory.

The shards job writes one `test` example per test recording (schema.TEST_FIELDS) into OUT/test/,
listed in manifest["files"]["test"]. Inference streams them one at a time (the full RFCX test set
is ~11 GB of int16 audio, too much to hold at once).

    from trainer import data, recordings
    manifest = data.read_manifest(shards_dir)
    ids = recordings.list_test_ids(shards_dir, manifest)              # cheap pre-pass
    for rec in recordings.iter_test_recordings(shards_dir, manifest):
        rec.recording_id, rec.waveform                                 # str, float32 [samples]
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from pipeline import schema
from pipeline.errors import UserError


@dataclasses.dataclass(frozen=True)
class Recording:
    """One test recording: its id and its audio as float32 [num_samples] in [-1, 1)."""

    recording_id: str
    waveform: np.ndarray
    sample_rate: int


def list_test_shards(shards_dir: str | Path, manifest: dict[str, Any]) -> list[str]:
    """Absolute paths of the test shards; an error when the shards hold no test examples."""
    rel = manifest.get("files", {}).get("test", [])
    count = manifest.get("counts", {}).get("test_examples")
    if not rel or count == 0:
        raise UserError(
            f"{shards_dir} holds no test examples (manifest lists {len(rel)} test shard(s), "
            f"{count} test example(s)); shard a dataset with a test/ dir"
        )
    paths = [os.path.join(str(shards_dir), r) for r in rel]  # gfile: local and gs:// alike
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise UserError(f"{len(missing)} test shard(s) listed in the manifest are missing, e.g. {missing[0]}; "
                        f"re-run `make shards`")
    return paths


def _records(files: list[str], spec: dict) -> Iterator[dict[str, Any]]:
    """Parsed examples (numpy values) of `files` in order, one at a time."""
    dataset = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec))
    try:
        yield from dataset.as_numpy_iterator()
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:  # as data.scan_shard
        raise UserError(f"a test shard is corrupt ({e.message.splitlines()[0]}); re-run `make shards`") from e


def list_test_ids(shards_dir: str | Path, manifest: dict[str, Any]) -> list[str]:
    """Recording ids of the test examples in shard order, without decoding audio."""
    spec = {"recording_id": tf.io.FixedLenFeature([], tf.string)}
    return [r["recording_id"].decode() for r in _records(list_test_shards(shards_dir, manifest), spec)]


def iter_test_recordings(shards_dir: str | Path, manifest: dict[str, Any]) -> Iterator[Recording]:
    """Yields every test recording in shard order; checks version and sample rate of each."""
    files = list_test_shards(shards_dir, manifest)
    expected_rate = int(manifest["sample_rate"])
    for r in _records(files, schema.test_parse_spec()):
        recording_id = r["recording_id"].decode()
        schema.check_version(r["schema_version"], f"test example {recording_id}")
        if int(r["sample_rate"]) != expected_rate:
            raise UserError(
                f"test example {recording_id} has sample rate {int(r['sample_rate'])} Hz, the "
                f"manifest says {expected_rate} Hz; re-run `make shards`"
            )
        pcm = schema.pcm16_to_numpy(r["audio"])
        # int16 -> float32 in [-1, 1): the same scaling as schema.pcm16_to_float in training.
        yield Recording(recording_id, pcm.astype(np.float32) / 32768.0, expected_rate)
