"""The detection job on gs:// against a real GCS emulator (fake-gcs-server on loopback, tests/helpers/gcs_emulator.py):
the model and the recordings in a bucket, OUT in the bucket; workers copy the SavedModel through core.fs.
The reference is the same job's local run (tests/detect/conftest.py's detect_run) read from disk, and the
emulator's own object listing. The emulator is a dev dependency: when it cannot start, this fails, never skips."""
from __future__ import annotations

import io
import json
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.helpers.gcs_emulator import running_emulator

BUCKET = "rfcx-detect"
pytestmark = pytest.mark.gcs


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with running_emulator(str(tmp_path_factory.mktemp("gcs_emulator")), BUCKET) as emulator:
        yield emulator


def test_the_job_reads_and_writes_gs_and_matches_its_local_run(gcs, fake_export, field_audio, detect_run):
    from detect import run, transforms

    folder, good, _ = field_audio
    for rid, path in good.items():  # the good recordings only: a FIFO cannot be uploaded
        gcs.upload_bytes(f"gs://{BUCKET}/audio/{os.path.relpath(path, folder)}", open(path, "rb").read())
    gcs.upload_dir(fake_export, f"gs://{BUCKET}/export")
    out = f"gs://{BUCKET}/out"
    result = run.run(["--model", f"gs://{BUCKET}/export", "--audio", f"gs://{BUCKET}/audio", "--out", out,
                      "--embeddings", "--threshold", "0.5", "--progress_seconds", "0"])
    assert run.read_counters(result)[transforms.SCORED] == len(good)
    objects = set(gcs.list_objects(out))
    for rid in good:
        assert f"{out}/windows/{rid}.parquet" in objects and f"{out}/raven/{rid}.txt" in objects
    assert not [o for o in objects if ".tmp-" in o]
    local_out = detect_run[0]
    remote = pd.read_csv(io.BytesIO(gcs.read_bytes(f"{out}/detections.csv")))
    pd.testing.assert_frame_equal(remote, pd.read_csv(os.path.join(local_out, "detections.csv")))
    for rid in good:
        got = pq.read_table(io.BytesIO(gcs.read_bytes(f"{out}/windows/{rid}.parquet"))).to_pandas()
        want = pq.read_table(os.path.join(local_out, "windows", rid + ".parquet")).to_pandas()
        pd.testing.assert_frame_equal(got, want)
    assert json.loads(gcs.read_bytes(f"{out}/summary.json"))["scored"] == len(good)
