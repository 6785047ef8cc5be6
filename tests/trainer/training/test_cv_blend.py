"""The CV report's blend with the baseline: report.json and report.md hold the search on the OOF slices.

Fold run dirs and the baseline's oof.csv are written from the hand-worked case of tests/helpers/fake_oof.py
(no training), whose blend pays at model weight 0.6 (recording LWLRAP 1.0 against 0.75 for each alone).
"""
from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers.fake_oof import (
    BASELINE,
    EXPECTED_BY_WEIGHT,
    MODEL,
    slices,
    write_baseline_oof,
    write_fold_runs,
)
from tests.trainer.training.test_cv_pictures import number, parse_tables
from trainer.training import report


def test_the_report_says_the_blend_pays_and_at_which_weight(tmp_path):
    run_dirs = write_fold_runs(tmp_path, slices(MODEL, seed=0))
    baseline_dir = write_baseline_oof(tmp_path / "baseline", slices(BASELINE, seed=1))
    result = report.write_cv_report(run_dirs, str(tmp_path / "cv"), baseline_dir)
    written = json.loads((tmp_path / "cv" / "report.json").read_text())
    mix = written["blend"]
    assert mix == result["blend"]
    assert mix["model_recording_lwlrap"] == pytest.approx(written["recording_lwlrap"]) == pytest.approx(0.75)
    assert mix["baseline_recording_lwlrap"] == pytest.approx(written["baseline"]["recording_lwlrap"])
    assert mix["baseline_recording_lwlrap"] == pytest.approx(0.75)
    assert [g["recording_lwlrap"] for g in mix["grid"]] == pytest.approx(EXPECTED_BY_WEIGHT)
    assert mix["best_weight"] == pytest.approx(0.6) and mix["blend_recording_lwlrap"] == pytest.approx(1.0)
    assert mix["pays"] is True and mix["weight"] == pytest.approx(0.6) and mix["margin"] == 0.005
    assert mix["normalisation"] == "within-recording rank"
    # The baseline files the weight was chosen beside, fingerprinted for `make predict` (no submission.csv here).
    oof_bytes = (tmp_path / "baseline" / "oof.csv").read_bytes()
    assert written["baseline"]["oof_sha256"] == hashlib.sha256(oof_bytes).hexdigest()[:16]
    assert written["baseline"]["submission_sha256"] is None

    tables = parse_tables((tmp_path / "cv" / "report.md").read_text())
    rows = {r["figure"]: r["value"] for r in tables["Blend with the baseline"]}
    assert number(rows["best blend (weight 0.6)"]) == pytest.approx(1.0, abs=5e-5)
    assert number(rows["model alone (weight 1)"]) == pytest.approx(0.75, abs=5e-5)
    assert rows["blend pays"] == "True" and rows["model weight `make predict` uses"] == "0.6"


def test_slices_the_baseline_lacks_skip_the_blend_with_the_reason(tmp_path, capsys):
    run_dirs = write_fold_runs(tmp_path, slices(MODEL, seed=0))
    baseline = slices(BASELINE, seed=1)
    baseline_dir = write_baseline_oof(tmp_path / "baseline", baseline[baseline["kind"] == "tp"])
    result = report.write_cv_report(run_dirs, str(tmp_path / "cv"), baseline_dir)
    mix = result["blend"]
    assert mix["pays"] is False and mix["weight"] == 1.0
    assert mix["skipped"].startswith("no blend with the baseline: the model's and the baseline's OOF slices differ: "
                                     "4 only in the model's, 0 only in the baseline's")
    assert result["baseline"]["recording_lwlrap"] is not None  # the baseline still stands beside the model
    assert mix["skipped"] in (tmp_path / "cv" / "report.md").read_text()


def test_without_a_baseline_there_is_no_blend(tmp_path):
    run_dirs = write_fold_runs(tmp_path, slices(MODEL, seed=0))
    result = report.write_cv_report(run_dirs, str(tmp_path / "cv"), str(tmp_path / "baseline"))
    assert result["blend"] is None and result["baseline"] is None
    assert "Blend" not in (tmp_path / "cv" / "report.md").read_text()
