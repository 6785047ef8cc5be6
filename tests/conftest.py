"""Session fixtures shared by the whole suite: one tiny demo dataset and its shards, made by the project's code.

    def test_x(tiny_dataset, tiny_shards):
        tiny_dataset  # str: RFCX-layout dir, 10 train recordings of 12 s, 3 test recordings (demo_data seed 0)
        tiny_shards   # str: that dataset sharded by a real DirectRunner run: --num_folds 3 --slice_seconds 4

Both are built once per session and must be treated as read-only.

    @pytest.fixture(scope="module")
    def run(module_tmp_path):        # pathlib.Path, removed when the module's tests are done
        ...

Trained runs hold ResNet50 files of 100-300 MB each: a module fixture that writes one takes `module_tmp_path`
so the suite's disk use stays near one module's (pytest.ini removes each passing test's tmp_path).
"""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No test may reach a GCE metadata server (Beam's GCS IO asks google-auth for credentials, and google-auth
# reads these at import): the check is off, and any lookup would go to a closed loopback port.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")

import pytest  # noqa: E402

TINY_NUM_TRAIN = 10
TINY_NUM_TEST = 3
TINY_DURATION_S = 12.0
TINY_NUM_FOLDS = 3
TINY_SLICE_SECONDS = 4.0


@pytest.fixture(scope="module")
def module_tmp_path(tmp_path_factory, request):
    """A directory for one test module's fixtures, deleted after its last test."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    from pipeline.demo_data import write_demo_dataset

    out = str(tmp_path_factory.mktemp("tiny_dataset"))
    write_demo_dataset(out, num_train=TINY_NUM_TRAIN, num_test=TINY_NUM_TEST, duration_s=TINY_DURATION_S, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_shards(tiny_dataset, tmp_path_factory) -> str:
    from pipeline import shards

    out = os.path.join(str(tmp_path_factory.mktemp("tiny_shards")), "shards")
    shards.run(["--data_dir", tiny_dataset, "--output_dir", out, "--num_folds", str(TINY_NUM_FOLDS),
                "--slice_seconds", str(TINY_SLICE_SECONDS), "--runner", "DirectRunner"])
    return out
