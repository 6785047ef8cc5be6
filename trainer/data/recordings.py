"""Reads the test recordings (whole, one example each) back from a shards directory.

The shards job writes one `test` example per test recording (schema.TEST_FIELDS) into OUT/test/,
listed in the manifest's files.test. Inference streams them one at a time (the full RFCX test set
is ~11 GB of int16 audio, too much to hold at once), so each recording is decoded once per run
whatever the number of models scoring it.

    from trainer.data import discovery, recordings
    manifest = discovery.read_manifest(shards_dir)                         # core.manifest.Manifest
    ids = recordings.list_test_ids(shards_dir, manifest)              # cheap pre-pass
    for rec in recordings.iter_test_recordings(shards_dir, manifest):
        rec.recording_id, rec.waveform                                 # str, float32 [samples]
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import tensorflow as tf

from core import fs, schema
from core.errors import UserError
from core.manifest import Manifest
from trainer.data import discovery, records


@dataclasses.dataclass(frozen=True)
class Recording:
    """One test recording: its id and its audio as float32 [num_samples] in [-1, 1)."""

    recording_id: str
    waveform: np.ndarray
    sample_rate: int


def list_test_shards(shards_dir: str, manifest: Manifest) -> list[str]:
    """Paths of the test shards under `shards_dir`; an error when the shards hold no test examples."""
    if not manifest.test or manifest.test_examples == 0:
        raise UserError(
            f"{shards_dir} holds no test examples (manifest lists {len(manifest.test)} test shard(s), "
            f"{manifest.test_examples} test example(s)); shard a dataset with a test/ dir"
        )
    paths = discovery.absolute(str(shards_dir), manifest.test)
    missing = fs.missing(paths)
    if missing:
        raise UserError(f"{len(missing)} test shard(s) listed in the manifest are missing, e.g. {missing[0]}; "
                        f"re-run `make shards`")
    return paths


def list_test_ids(shards_dir: str, manifest: Manifest) -> list[str]:
    """Recording ids of the test examples in shard order, without decoding audio."""
    spec = {"recording_id": tf.io.FixedLenFeature([], tf.string)}
    return [r["recording_id"].decode() for r in records.parsed_records(list_test_shards(shards_dir, manifest), spec)]


def iter_test_recordings(shards_dir: str, manifest: Manifest) -> Iterator[Recording]:
    """Yields every test recording in shard order; checks version and sample rate of each."""
    files = list_test_shards(shards_dir, manifest)
    expected_rate = manifest.sample_rate
    for r in records.parsed_records(files, records.test_parse_spec()):
        recording_id = r["recording_id"].decode()
        schema.check_version(r["schema_version"], f"test example {recording_id}")
        if int(r["sample_rate"]) != expected_rate:
            raise UserError(
                f"test example {recording_id} has sample rate {int(r['sample_rate'])} Hz, the "
                f"manifest says {expected_rate} Hz; re-run `make shards`"
            )
        # int16 -> float32 in [-1, 1): the scaling of records.pcm16_to_float in training.
        yield Recording(recording_id, schema.pcm16_to_float_numpy(r["audio"]), expected_rate)
