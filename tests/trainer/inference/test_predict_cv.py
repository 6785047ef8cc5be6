"""End to end on the tiny demo shards: cv (2 folds, 1 epoch, tiny preset) -> report -> ensemble submission.

One module-scoped CV run feeds every test here (training dominates the time). Expected values are
recomputed independently: LWLRAP with sklearn's label-ranking AP weighted by each row's positives,
the serving model's window scores reduced with plain numpy (max per recording, mean over runs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.windows import cut_windows
from tests.helpers.common import expect_user_error, sklearn_lwlrap
from tests.helpers.recipe_config import as_config_file_content, recipe_config
from trainer.data import recordings
from trainer.data.discovery import read_manifest
from trainer.evaluation.lwlrap import lwlrap
from trainer.inference import predict, serving
from trainer.recipe import config as config_lib
from trainer.training import cv, runs

# The tiny preset's sizes with every recipe setting explicit (tests/helpers/recipe_config.py), 1 epoch of 2 steps.
RECIPE = recipe_config({"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "verbose": 0})
NUM_CLASSES = 24
Y_COLS = [f"y{k}" for k in range(NUM_CLASSES)]
S_COLS = [f"s{k}" for k in range(NUM_CLASSES)]




@pytest.fixture(scope="module")
def train_args(tmp_path_factory) -> list[str]:
    path = tmp_path_factory.mktemp("settings") / "recipe.json"
    path.write_text(json.dumps(as_config_file_content(RECIPE)))
    return ["--preset", "tiny", "--config", str(path)]


@pytest.fixture(scope="module")
def cv_root(tiny_shards, module_tmp_path, train_args) -> Path:
    root = module_tmp_path / "runs"
    cv.main(["--shards_dir", tiny_shards, "--folds", "0", "1", "--runs_root", str(root), *train_args])
    return root


@pytest.fixture(scope="module")
def submission_csv(cv_root, tiny_shards) -> Path:
    out = cv_root / "submission.csv"
    predict.main(["--runs_root", str(cv_root), "--shards_dir", tiny_shards, "--output", str(out)])
    return out




def copy_run(src: Path, dst: Path, **config_changes) -> Path:
    """A run dir sharing src's model (symlink) with config.json changed (nested keys as dicts)."""
    dst.mkdir(parents=True)
    os.symlink(src / "best.keras", dst / "best.keras")
    shutil.copy(src / "summary.json", dst / "summary.json")
    config = json.loads((src / "config.json").read_text())
    for key, value in config_changes.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_cv_writes_oof_report_and_plots(cv_root):
    out = cv_root / "cv"
    for name in ("oof.csv", "report.json", "per_class.png", "curves.png", "confusion.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    for png in ("per_class.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    oof = pd.read_csv(out / "oof.csv", dtype={"recording_id": str})
    folds = [pd.read_csv(cv_root / f"fold{k}" / "val_predictions.csv", dtype={"recording_id": str}) for k in (0, 1)]
    assert len(oof) == sum(len(f) for f in folds)
    assert sorted(oof["fold"].unique()) == [0, 1]
    report = json.loads((out / "report.json").read_text())
    truth, scores = oof[Y_COLS].to_numpy(), oof[S_COLS].to_numpy()
    assert report["overall_lwlrap"] == pytest.approx(lwlrap(truth, scores), abs=1e-12)
    assert report["overall_lwlrap"] == pytest.approx(sklearn_lwlrap(truth, scores), abs=1e-9)
    assert report["num_examples"] == len(oof)
    assert set(report["folds"]) == {"0", "1"}
    for k, fold in enumerate(folds):
        entry = report["folds"][str(k)]
        assert entry["num_examples"] == len(fold)
        expected = sklearn_lwlrap(fold[Y_COLS].to_numpy(), fold[S_COLS].to_numpy())
        assert entry["lwlrap"] == pytest.approx(expected, abs=1e-9)
        assert entry["epochs_run"] == 1
    per_class = report["per_class"]
    assert [c["class"] for c in per_class] == list(range(NUM_CLASSES))
    assert [c["positives"] for c in per_class] == truth.sum(axis=0).astype(int).tolist()
    weighted = sum(c["lwlrap"] * c["weight"] for c in per_class)
    assert weighted == pytest.approx(report["overall_lwlrap"], abs=1e-9)

    # Recording level (the competition's): a recording's score per species is the max over its OOF slices.
    rec_truth, rec_scores = oof.groupby("recording_id")[Y_COLS].max(), oof.groupby("recording_id")[S_COLS].max()
    assert report["num_recordings"] == len(rec_truth) == oof["recording_id"].nunique()
    assert report["recording_lwlrap"] == pytest.approx(
        sklearn_lwlrap(rec_truth.to_numpy(), rec_scores.loc[rec_truth.index].to_numpy()), abs=1e-9)
    for k, fold in enumerate(folds):
        fold_truth = fold.groupby("recording_id")[Y_COLS].max()
        fold_scores = fold.groupby("recording_id")[S_COLS].max().loc[fold_truth.index]
        assert report["folds"][str(k)]["recording_lwlrap"] == pytest.approx(
            sklearn_lwlrap(fold_truth.to_numpy(), fold_scores.to_numpy()), abs=1e-9)
    assert [c["positive_recordings"] for c in per_class] == rec_truth.to_numpy().sum(axis=0).astype(int).tolist()


def test_cv_gives_fold_k_the_seed_plus_k(cv_root):
    seeds = [json.loads((cv_root / f"fold{k}" / "config.json").read_text())["seed"] for k in (0, 1)]
    assert seeds == [RECIPE.seed, RECIPE.seed + 1]  # fold models of one ensemble start from different weights
    top = config_lib.apply_overrides(RECIPE, {"seed": 2**32 - 1})
    assert cv.fold_config(top, 2).seed == 1  # wraps inside the seed range
    assert cv.cv_config(cv.fold_config(top, 2), 2) == top


def test_cv_again_skips_complete_folds(cv_root, tiny_shards, capsys, train_args):
    summaries = [cv_root / f"fold{k}" / "summary.json" for k in (0, 1)]
    before = [p.stat().st_mtime_ns for p in summaries]
    report_before = (cv_root / "cv" / "report.json").read_text()
    cv.main(["--shards_dir", tiny_shards, "--folds", "0", "1", "--runs_root", str(cv_root), *train_args])
    assert [p.stat().st_mtime_ns for p in summaries] == before
    assert "fold 0: complete" in capsys.readouterr().out
    assert (cv_root / "cv" / "report.json").read_text() == report_before


def test_cv_refuses_a_complete_fold_of_another_config_and_unknown_folds(cv_root, tiny_shards, capsys, train_args):
    base = ["--shards_dir", tiny_shards, "--runs_root", str(cv_root), *train_args]
    expect_user_error(capsys, cv.main, base + ["--folds", "0", "--epochs", "2"],
                      "fold 0", "another config", "epochs: 1 -> 2")
    expect_user_error(capsys, cv.main, base + ["--folds", "0", "9", "--epochs", "1"], "unknown fold 9")
    expect_user_error(capsys, cv.main, base + ["--folds", "1", "1", "--epochs", "1"], "more than once")


def test_submission_matches_sample_submission_and_is_scored(submission_csv, tiny_shards):
    sample = pd.read_csv(Path(tiny_shards) / "sample_submission.csv", dtype={"recording_id": str})
    table = pd.read_csv(submission_csv, dtype={"recording_id": str})
    assert submission_csv.read_text().splitlines()[0] == "recording_id," + ",".join(S_COLS)
    assert table["recording_id"].tolist() == sample["recording_id"].tolist()
    values = table[S_COLS].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    truth = pd.read_csv(Path(tiny_shards) / "test_truth.csv", dtype={"recording_id": str})
    truth = truth.set_index("recording_id").loc[table["recording_id"], S_COLS].to_numpy()
    score = json.loads(submission_csv.with_name("submission.score.json").read_text())
    assert score["lwlrap"] == pytest.approx(sklearn_lwlrap(truth, values), abs=1e-6)
    settings = json.loads(submission_csv.with_name("submission.config.json").read_text())
    assert len(settings["runs"]) == 2


def test_serving_models_reproduce_the_ensemble(submission_csv, cv_root, tiny_shards):
    """serving.keras (waveform in) of each fold, max over windows, mean over folds == the submission."""
    manifest = read_manifest(tiny_shards)
    waves = {r.recording_id: r.waveform for r in recordings.iter_test_recordings(tiny_shards, manifest)}
    per_run = []
    for fold in (0, 1):
        run = runs.open_run(cv_root / f"fold{fold}")
        model = serving.load_serving(run.run_dir)
        window = run.window_samples
        assert model.input_shape == (None, window)
        cuts = [cut_windows(wave, window, window // 2) for wave in waves.values()]  # [num_windows, window] each
        served = np.asarray(model(np.concatenate(cuts), training=False))  # [all windows, C]
        bounds = np.cumsum([0] + [len(c) for c in cuts])
        rows = [served[a:b].max(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]
        per_run.append(pd.DataFrame(rows, index=list(waves), columns=S_COLS))
    expected = (per_run[0] + per_run[1]) / 2
    table = pd.read_csv(submission_csv, dtype={"recording_id": str}).set_index("recording_id")
    np.testing.assert_allclose(table[S_COLS].to_numpy(), expected.loc[table.index].to_numpy(), atol=1e-5)


def test_an_ensemble_reads_the_test_audio_once(submission_csv, cv_root, tiny_shards, tmp_path, monkeypatch):
    """Both folds score each recording from one pass over the test shards; other batches, same submission."""
    passes = []
    stream = recordings.iter_test_recordings

    def counted(*args, **kwargs):
        passes.append(args)
        return stream(*args, **kwargs)

    monkeypatch.setattr(recordings, "iter_test_recordings", counted)
    out = tmp_path / "again.csv"
    predict.main(["--runs_root", str(cv_root), "--shards_dir", tiny_shards, "--output", str(out), "--batch_size", "3"])
    assert len(passes) == 1
    again = pd.read_csv(out, dtype={"recording_id": str})
    first = pd.read_csv(submission_csv, dtype={"recording_id": str})
    assert again["recording_id"].tolist() == first["recording_id"].tolist()
    np.testing.assert_allclose(again[S_COLS].to_numpy(), first[S_COLS].to_numpy(), atol=1e-5)


def test_predict_user_errors(cv_root, tiny_shards, tmp_path, capsys):
    fold0 = cv_root / "fold0"
    out = str(tmp_path / "sub.csv")

    def args(*run_dirs, shards=tiny_shards):
        return [a for d in run_dirs for a in ("--run_dir", str(d))] + ["--shards_dir", str(shards), "--output", out]

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(fold0 / "config.json", unfinished / "config.json")
    expect_user_error(capsys, predict.main, args(unfinished), str(unfinished), "summary.json", "not a finished")
    expect_user_error(capsys, predict.main, ["--runs_root", str(tmp_path), "--shards_dir", tiny_shards,
                                             "--output", out], "no complete run dir")

    expect_user_error(capsys, predict.main, args(fold0) + ["--stride_seconds", "3"], "--stride_seconds 3.0")
    other_rate = copy_run(fold0, tmp_path / "rate", mel={"sample_rate": 32000})
    expect_user_error(capsys, predict.main, args(other_rate), "32000 Hz", "48000 Hz")
    fewer_classes = copy_run(fold0, tmp_path / "classes", num_classes=5)
    expect_user_error(capsys, predict.main, args(fold0, fewer_classes), "different num_classes", "5 classes")

    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    sample = pd.read_csv(shards / "sample_submission.csv", dtype={"recording_id": str})
    dropped = sample["recording_id"].iloc[1]
    sample.drop(index=1).to_csv(shards / "sample_submission.csv", index=False)
    expect_user_error(capsys, predict.main, args(fold0, shards=shards), "not in sample_submission.csv", dropped)
    extra = pd.concat([sample, sample.iloc[[0]].assign(recording_id="fffffffff")])
    extra.to_csv(shards / "sample_submission.csv", index=False)
    expect_user_error(capsys, predict.main, args(fold0, shards=shards), "lack 1 recording", "fffffffff")

    # Shards of a dataset without test recordings: the manifest lists no test shard.
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["files"]["test"], manifest["counts"]["test_examples"] = [], 0
    (shards / "manifest.json").write_text(json.dumps(manifest))
    expect_user_error(capsys, predict.main, args(fold0, shards=shards), "no test examples")
    assert not Path(out).exists()


def test_predict_cli_exits_2_without_traceback(tiny_shards, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.inference.predict", "--run_dir", str(tmp_path / "nope"), "--shards_dir", tiny_shards,
         "--output", str(tmp_path / "sub.csv")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: run dir {tmp_path / 'nope'} has no summary.json")


def test_runs_root_discovery_takes_complete_runs_and_names_unfinished(tmp_path, caplog):
    for name, files in {"fold0": ("config.json", "summary.json"), "fold1": ("config.json",),
                        "fold2": ("config.json", "summary.json"), "cv": ("report.json",)}.items():
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_text("{}")
    with caplog.at_level("WARNING", logger="trainer.training.runs"):
        found = runs.complete_runs_under(tmp_path)
    assert [os.path.basename(d) for d in found] == ["fold0", "fold2"]
    assert "fold1" in caplog.text and "cv" not in caplog.text
