"""trainer.pseudo end to end on the tiny demo shards: round 0 is one fold run (a real Keras model with fixed
scores, tests.trainer.pseudo.test_label, so that no training is spent on it) -> one pseudo-label round -> its
cv (tiny preset, 1 step) and test score; then the same command again redoes nothing (every output kept).
"""
from __future__ import annotations

import json

import pandas as pd

from tests.helpers.common import expect_user_error
from tests.helpers.recipe_config import recipe_config
from tests.trainer.pseudo.test_label import _fingerprint_run
from trainer.data import soft_targets
from trainer.pseudo import rounds
from trainer.recipe import config as config_lib
from trainer.training import train

RECIPE = recipe_config({"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "verbose": 0})


def test_one_round_trains_on_the_sidecar_reports_and_resumes(tiny_shards, tmp_path, capsys):
    root = tmp_path / "runs"
    _fingerprint_run(str(root / "fold0"), tiny_shards, 0, RECIPE)
    argv = ["--shards_dir", tiny_shards, "--runs_root", str(root), "--rounds", "1", "--soft_target_weight", "0.5"]
    first = rounds.main(argv)
    sidecar = root / "pseudo" / "round1" / soft_targets.FILE
    table = pd.read_csv(sidecar, dtype={soft_targets.ID: str})
    assert set(table[soft_targets.FOLD]) == {0}  # only folds with a run are scored
    for fold in (0,):
        cfg = config_lib.load_run_config(str(root / "pseudo" / "round1" / f"fold{fold}"))
        assert cfg.soft_targets == str(sidecar) and cfg.soft_target_weight == 0.5
        assert cfg.epochs == RECIPE.epochs and cfg.mel == train.resolve_mel_device(RECIPE).mel  # round 0's config otherwise
    assert [r["round"] for r in first] == [0, 1]
    assert first[0]["oof_recording_lwlrap"] is None  # round 0 has no cv report here
    assert first[1]["oof_recording_lwlrap"] is not None
    assert all(r["test_lwlrap"] is not None for r in first)
    report = json.loads((root / "pseudo" / rounds.ROUNDS_JSON).read_text())
    assert report["rounds"] == first
    assert "| 1 |" in (root / "pseudo" / rounds.ROUNDS_MD).read_text()

    mtimes = {p: p.stat().st_mtime_ns for p in (sidecar, root / "pseudo" / "round1" / "fold0" / "best.keras",
                                                root / "pseudo" / "round1" / rounds.SUBMISSION)}
    capsys.readouterr()
    again = rounds.main(argv)
    out = capsys.readouterr().out
    assert "kept" in out and "complete" in out
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    expect_user_error(capsys, rounds.main, argv[:-4] + ["--rounds", "0"], "--rounds must be >= 1")
