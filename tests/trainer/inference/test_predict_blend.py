"""`predict --blend_baseline auto|off` on the tiny shards, with the models' scores stood in (no training).

The fold runs are stand-in run dirs (tests.helpers.round2); Scorer.load and ensemble_recording_scores are
replaced so each fold "scores" the test recordings with fixed random numbers. The blended submission is
recomputed here with scipy's rankdata (average ranks within each recording), independent of
trainer.evaluation.blend.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from tests.helpers.common import expect_user_error, sklearn_lwlrap
from tests.helpers.round2 import _fake_finished_run
from trainer.evaluation import blend
from trainer.inference import predict

NUM_CLASSES = 24
S_COLS = [f"s{k}" for k in range(NUM_CLASSES)]
WEIGHT = 0.7  # the model's weight in the report below


@pytest.fixture
def sample(tiny_shards) -> pd.DataFrame:
    return pd.read_csv(f"{tiny_shards}/sample_submission.csv", dtype={"recording_id": str})


@pytest.fixture
def fold_scores(sample) -> list[pd.DataFrame]:
    """What each of the two fold runs scores the test recordings (recording_id index, s* columns)."""
    rng = np.random.default_rng(0)
    return [pd.DataFrame(rng.random((len(sample), NUM_CLASSES)), index=sample["recording_id"], columns=S_COLS)
            for _ in range(2)]


@pytest.fixture
def fake_models(monkeypatch, fold_scores):
    """Scorer.load without a model; ensemble_recording_scores returns fold_scores. Returns the calls' log."""
    calls = []

    def load(run, cfg):
        return predict.Scorer(run, None, run.window_samples, predict.stride_samples(run, cfg))

    def scores(scorers, shards_dir, manifest, recording_ids, batch_size):
        calls.append(list(recording_ids))
        return [fold_scores[int(s.run.run_dir[-1])].loc[list(recording_ids)].to_numpy(np.float32) for s in scorers]

    monkeypatch.setattr(predict.Scorer, "load", staticmethod(load))
    monkeypatch.setattr(predict, "ensemble_recording_scores", scores)
    return calls


@pytest.fixture
def runs_root(tmp_path, sample):
    """fold0, fold1 (stand-ins), cv/report.json whose blend pays at model weight WEIGHT, baseline/submission.csv
    (rows shuffled: predict must align them by recording id)."""
    root = tmp_path / "runs"
    for k in (0, 1):
        _fake_finished_run(root / f"fold{k}", fold=k)
    pays = blend.BlendResult(model_lwlrap=0.8, baseline_lwlrap=0.7, weights=blend.GRID,
                             lwlrap_by_weight=tuple(0.8 for _ in blend.GRID), best_weight=WEIGHT,
                             blend_lwlrap=0.9, margin=0.005, num_recordings=10)
    write_report(root, pays.to_dict())
    rng = np.random.default_rng(1)
    baseline = sample.copy()
    baseline[S_COLS] = rng.random((len(sample), NUM_CLASSES)) * 0.1  # logistic-regression-like small scores
    (root / "baseline").mkdir()
    baseline.iloc[::-1].to_csv(root / "baseline" / "submission.csv", index=False)
    return root


def write_report(root, blend_entry, baseline=None) -> None:
    (root / "cv").mkdir(exist_ok=True)
    folds = {str(k): {"run_dir": str(root / f"fold{k}"), "recording_lwlrap": 0.8} for k in (0, 1)}
    (root / "cv" / "report.json").write_text(json.dumps({"folds": folds, "blend": blend_entry, "baseline": baseline}))


def sha16(path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def report_seeing_the_baseline(root) -> None:
    """The report as `make cv` writes it now: the blend pays and the baseline's files are fingerprinted."""
    report = json.loads((root / "cv" / "report.json").read_text())
    (root / "baseline" / "oof.csv").write_text("recording_id,fold\nr1,0\n")
    write_report(root, report["blend"], {"oof_sha256": sha16(root / "baseline" / "oof.csv"),
                                         "submission_sha256": sha16(root / "baseline" / "submission.csv")})


def within_recording_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's species ranked (average rank for ties), 0 for the lowest, 1 for the highest."""
    ranks = rankdata(table.to_numpy(), method="average", axis=1)
    return pd.DataFrame((ranks - 1) / (NUM_CLASSES - 1), index=table.index, columns=table.columns)


def run_predict(root, tiny_shards, *extra) -> tuple[pd.DataFrame, dict]:
    out = root / "submission.csv"
    predict.main(["--runs_root", str(root), "--shards_dir", tiny_shards, "--output", str(out), *extra])
    table = pd.read_csv(out, dtype={"recording_id": str}).set_index("recording_id")
    return table, json.loads(out.with_name("submission.config.json").read_text())


def truth_of(tiny_shards, index) -> np.ndarray:
    truth = pd.read_csv(f"{tiny_shards}/test_truth.csv", dtype={"recording_id": str}).set_index("recording_id")
    return truth.loc[index, S_COLS].to_numpy()


def test_auto_writes_the_blend_when_the_report_says_it_pays(runs_root, tiny_shards, fake_models, fold_scores,
                                                             sample, capsys):
    table, config = run_predict(runs_root, tiny_shards)
    out = capsys.readouterr().out
    assert table.index.tolist() == sample["recording_id"].tolist()
    ensemble = (fold_scores[0] + fold_scores[1]) / 2
    baseline = pd.read_csv(runs_root / "baseline" / "submission.csv", dtype={"recording_id": str})
    baseline = baseline.set_index("recording_id")[S_COLS]
    expected = WEIGHT * within_recording_ranks(ensemble) + (1 - WEIGHT) * within_recording_ranks(baseline)
    np.testing.assert_allclose(table[S_COLS].to_numpy(), expected.loc[table.index].to_numpy(), atol=1e-6)

    assert config["blend"]["blended"] is True and config["config"]["blend_baseline"] == "auto"
    assert config["blend"]["model_weight"] == pytest.approx(0.7)
    assert config["blend"]["baseline_weight"] == pytest.approx(0.3)
    assert config["blend"]["baseline_submission"] == str(runs_root / "baseline" / "submission.csv")
    assert f"blending with the baseline ({runs_root / 'baseline' / 'submission.csv'}) at model weight 0.7" in out
    assert "blended with the baseline at model weight 0.7" in out
    score = json.loads((runs_root / "submission.score.json").read_text())
    truth = truth_of(tiny_shards, table.index)
    assert score["lwlrap"] == pytest.approx(sklearn_lwlrap(truth, expected.loc[table.index].to_numpy()), abs=1e-6)
    assert score["model_alone_lwlrap"] == pytest.approx(
        sklearn_lwlrap(truth, ensemble.loc[table.index].to_numpy()), abs=1e-6)


def test_auto_blends_the_baseline_the_report_fingerprinted(runs_root, tiny_shards, fake_models, capsys):
    report_seeing_the_baseline(runs_root)
    _, config = run_predict(runs_root, tiny_shards)
    assert config["blend"]["blended"] is True and config["blend"]["model_weight"] == pytest.approx(WEIGHT)


def test_off_writes_the_ensemble_alone(runs_root, tiny_shards, fake_models, fold_scores, capsys):
    table, config = run_predict(runs_root, tiny_shards, "--blend_baseline", "off")
    ensemble = (fold_scores[0] + fold_scores[1]) / 2
    np.testing.assert_allclose(table[S_COLS].to_numpy(), ensemble.loc[table.index].to_numpy(), atol=1e-6)
    assert config["blend"] == {"mode": "off", "blended": False, "reason": "model alone (--blend_baseline off)"}
    assert "model alone (--blend_baseline off)" in capsys.readouterr().out
    assert "model_alone_lwlrap" not in json.loads((runs_root / "submission.score.json").read_text())


def _no_report(root):
    (root / "cv" / "report.json").unlink()


def _does_not_pay(root):
    result = blend.BlendResult(0.8, 0.7, blend.GRID, tuple(0.8 for _ in blend.GRID), 0.5, 0.802, 0.005, 10)
    write_report(root, result.to_dict())


def _skipped(root):
    write_report(root, {"skipped": "no blend with the baseline: the slices differ", "pays": False, "weight": 1.0})


def _no_baseline_submission(root):
    (root / "baseline" / "submission.csv").unlink()


def _baseline_rerun(root):
    """`make baseline` run again after `make cv`: another submission.csv than the report fingerprinted."""
    report_seeing_the_baseline(root)
    path = root / "baseline" / "submission.csv"
    table = pd.read_csv(path, dtype={"recording_id": str})
    table[S_COLS] = table[S_COLS] * 0.5
    table.to_csv(path, index=False)


def _baseline_oof_rerun(root):
    report_seeing_the_baseline(root)
    (root / "baseline" / "oof.csv").write_text("recording_id,fold\nr2,1\n")


@pytest.mark.parametrize("damage, reason", [
    (_no_report, "no cv report at"),
    (_does_not_pay, "the blend does not pay (best 0.8020 at model weight 0.5, margin 0.005); model alone"),
    (_skipped, "no blend with the baseline: the slices differ"),
    (_no_baseline_submission, "no baseline submission at"),
    (_baseline_rerun, "the baseline's submission.csv in "),
    (_baseline_oof_rerun, "the baseline's oof.csv in "),
])
def test_auto_predicts_from_the_model_alone_and_says_why(runs_root, tiny_shards, fake_models, fold_scores, capsys,
                                                         damage, reason):
    damage(runs_root)
    table, config = run_predict(runs_root, tiny_shards)
    ensemble = (fold_scores[0] + fold_scores[1]) / 2
    np.testing.assert_allclose(table[S_COLS].to_numpy(), ensemble.loc[table.index].to_numpy(), atol=1e-6)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model alone")]
    assert len(lines) == 1 and lines[0].startswith("model alone (--blend_baseline auto): ") and reason in lines[0]
    assert config["blend"]["blended"] is False and reason in config["blend"]["reason"]


def test_a_weight_chosen_for_other_folds_is_not_used(runs_root, tiny_shards, fake_models, fold_scores, capsys):
    out = runs_root / "fold0.csv"
    predict.main(["--run_dir", str(runs_root / "fold0"), "--shards_dir", tiny_shards, "--output", str(out)])
    assert "was chosen for fold0, fold1, the ensemble is fold0" in capsys.readouterr().out
    table = pd.read_csv(out, dtype={"recording_id": str}).set_index("recording_id")
    np.testing.assert_allclose(table[S_COLS].to_numpy(), fold_scores[0].loc[table.index].to_numpy(), atol=1e-6)


def test_a_baseline_submission_of_other_recordings_fails_before_inference(runs_root, tiny_shards, fake_models,
                                                                          capsys):
    path = runs_root / "baseline" / "submission.csv"
    baseline = pd.read_csv(path, dtype={"recording_id": str})
    baseline.iloc[1:].to_csv(path, index=False)
    expect_user_error(capsys, predict.main, ["--runs_root", str(runs_root), "--shards_dir", tiny_shards,
                                             "--output", str(runs_root / "submission.csv")],
                      str(path), "lack 1 recording", "--blend_baseline off")
    assert fake_models == [] and not (runs_root / "submission.csv").exists()


def test_an_unknown_blend_mode_is_refused(runs_root, tiny_shards, capsys):
    argv = ["--runs_root", str(runs_root), "--shards_dir", tiny_shards, "--output", str(runs_root / "s.csv"),
            "--blend_baseline", "always"]
    expect_user_error(capsys, predict.main, argv, "--blend_baseline", "always")
    with pytest.raises(predict.UserError, match="--blend_baseline must be one of auto, off"):
        predict.PredictConfig(blend_baseline="always")
