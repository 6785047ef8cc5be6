"""Max-then-mean aggregation and the submission table checked against sample_submission.csv."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.inference import submission


def _sample(ids, num_classes=3) -> pd.DataFrame:
    table = pd.DataFrame({"recording_id": ids})
    for k in range(num_classes):
        table[f"s{k}"] = 0
    return table


def test_max_over_windows_then_mean_over_runs_by_hand():
    # Run A: recording 0 has windows [.1 .9] and [.4 .2]; recording 1 has one window [.3 .3].
    run_a = submission.max_per_recording(
        np.array([[0.1, 0.9], [0.3, 0.3], [0.4, 0.2]]), np.array([0, 1, 0]), 2
    )
    np.testing.assert_allclose(run_a, [[0.4, 0.9], [0.3, 0.3]])
    # Run B: recording 0 has windows [.0 .5], [.6 .1]; recording 1 has [.7 .0], [.2 .8].
    run_b = submission.max_per_recording(
        np.array([[0.0, 0.5], [0.6, 0.1], [0.7, 0.0], [0.2, 0.8]]), np.array([0, 0, 1, 1]), 2
    )
    np.testing.assert_allclose(run_b, [[0.6, 0.5], [0.7, 0.8]])
    ens = submission.mean_over_runs([run_a, run_b])
    np.testing.assert_allclose(ens, [[0.5, 0.7], [0.5, 0.55]], rtol=1e-6)


def test_recording_without_windows_is_an_error():
    with pytest.raises(ValueError, match=r"\[1\]"):
        submission.max_per_recording(np.zeros((2, 3)), np.array([0, 2]), 3)


def test_runs_of_different_shapes_cannot_be_averaged():
    with pytest.raises(ValueError):
        submission.mean_over_runs([np.zeros((2, 3)), np.zeros((2, 4))])


def test_submission_follows_sample_order_and_header(tmp_path):
    sample = _sample(["c", "a", "b"])
    scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], dtype=np.float32)
    table = submission.build_submission(["a", "b", "c"], scores, sample)
    assert list(table.columns) == ["recording_id", "s0", "s1", "s2"]
    assert table["recording_id"].tolist() == ["c", "a", "b"]
    np.testing.assert_allclose(table.loc[0, ["s0", "s1", "s2"]].astype(float), [0.7, 0.8, 0.9], rtol=1e-6)
    path = submission.write_submission(table, tmp_path / "out" / "submission.csv")
    header = open(path).read().splitlines()[0]
    assert header == "recording_id,s0,s1,s2"
    back = pd.read_csv(path)
    assert back["recording_id"].tolist() == ["c", "a", "b"]


def test_missing_recording_is_named():
    with pytest.raises(submission.SubmissionError, match="lack 1 recording.*: b"):
        submission.build_submission(["a", "c"], np.zeros((2, 3)), _sample(["a", "b", "c"]))


def test_extra_recording_is_named():
    with pytest.raises(submission.SubmissionError, match="not in sample_submission.csv: zz"):
        submission.build_submission(["a", "zz"], np.zeros((2, 3)), _sample(["a"]))


def test_duplicate_recording_is_named():
    with pytest.raises(submission.SubmissionError, match="more than once: a"):
        submission.check_recordings(["a", "a", "b"], _sample(["a", "b"]), "the test shards")


def test_check_submission_rejects_wrong_order_header_and_nan():
    sample = _sample(["a", "b"])
    swapped = sample.iloc[[1, 0]].reset_index(drop=True)
    with pytest.raises(submission.SubmissionError, match="row 0 is b"):
        submission.check_submission(swapped, sample)
    with pytest.raises(submission.SubmissionError, match="header"):
        submission.check_submission(sample.rename(columns={"s2": "x"}), sample)
    nan = sample.copy()
    nan.loc[1, "s1"] = np.nan
    with pytest.raises(submission.SubmissionError, match="non-finite scores for: b"):
        submission.check_submission(nan, sample)


def test_wrong_score_shape_is_an_error():
    with pytest.raises(submission.SubmissionError, match="shape"):
        submission.build_submission(["a", "b"], np.zeros((2, 4)), _sample(["a", "b"]))


def test_read_score_table_checks_header_and_duplicates(tmp_path):
    good = tmp_path / "good.csv"
    _sample(["r1", "r2"], num_classes=24).to_csv(good, index=False)
    sample = submission.read_score_table(good)
    assert list(sample.columns) == ["recording_id"] + [f"s{k}" for k in range(24)]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a"], "s0": [0]}).to_csv(bad, index=False)
    with pytest.raises(submission.SubmissionError, match="header"):
        submission.read_score_table(bad)
    dup = tmp_path / "dup.csv"
    _sample(["a", "a"]).to_csv(dup, index=False)
    with pytest.raises(submission.SubmissionError, match="more than once: a"):
        submission.read_score_table(dup)
    with pytest.raises(submission.SubmissionError, match="not found"):
        submission.read_score_table(tmp_path / "nope.csv")


def test_align_truth_reorders_truth_to_the_submission():
    table = _sample(["b", "a"], num_classes=2)
    table[["s0", "s1"]] = [[0.2, 0.8], [0.6, 0.4]]
    truth = pd.DataFrame({"recording_id": ["a", "b"], "s0": [1, 0], "s1": [0, 1]})
    y, s = submission.align_truth(table, truth)
    np.testing.assert_array_equal(y, [[0, 1], [1, 0]])  # row 0 is b, row 1 is a
    np.testing.assert_allclose(s, [[0.2, 0.8], [0.6, 0.4]])
    with pytest.raises(submission.SubmissionError, match="ground truth lack 1 recording.*: b"):
        submission.align_truth(table, truth.iloc[:1])
