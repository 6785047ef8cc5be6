"""The whole chain with the real exporter: a run -> `make export` -> the detection job, against `make predict`.

The job reads the test FLAC files themselves (decode, windows, the SavedModel); predict reads the same
recordings from the test shards and scores them with the run's Keras serving model. Both cut windows by
core.windows, so their Kaggle submissions must agree up to the float32 round-off between the SavedModel's and
Keras' kernels (the export tests bound that at 1e-3 per score).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from core import export_layout
from tests.helpers.tiny_run import make_tiny_run

FLOAT_ATOL = 1e-3


def test_detect_submission_equals_predict(tiny_dataset, tiny_shards, tmp_path):
    from detect import run as detect_run
    from trainer.inference import export, predict

    run_dir = make_tiny_run(tmp_path / "run", seed=3)
    export_dir = str(tmp_path / "export")
    export.main(["--run", run_dir, "--export_dir", export_dir, "--skip_tflite"])
    predicted = str(tmp_path / "predict" / "submission.csv")
    predict.main(["--run_dir", run_dir, "--shards_dir", tiny_shards, "--output", predicted])
    out = str(tmp_path / "detect")
    detect_run.run(["--model", export_dir, "--audio", os.path.join(tiny_dataset, "test"), "--out", out,
                    "--test_layout", "--sample_submission", os.path.join(tiny_dataset, "sample_submission.csv"),
                    "--progress_seconds", "0"])

    ours = pd.read_csv(os.path.join(out, "submission.csv"))
    theirs = pd.read_csv(predicted)
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours["recording_id"]) == list(theirs["recording_id"])
    scores = ours.drop(columns="recording_id").to_numpy()
    assert scores.std() > 0.01  # the tiny model's scores vary, so agreement means something
    np.testing.assert_allclose(scores, theirs.drop(columns="recording_id").to_numpy(), atol=FLOAT_ATOL)

    # Per window too: the job's window rows are the export's windows of the predict rule (half-window stride).
    meta = export_layout.read_metadata(export_dir)
    rows = pd.read_parquet(os.path.join(out, "windows"))
    first = rows[rows["recording_id"] == theirs["recording_id"].iloc[0]]
    assert len(first) == len(set(first["start_s"])) > 1
    assert np.allclose(np.diff(np.sort(first["start_s"].to_numpy()))[:-1], meta.stride_samples / meta.sample_rate)
