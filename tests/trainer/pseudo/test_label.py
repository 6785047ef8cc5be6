"""trainer.pseudo.label: pseudo labels come only from the fold model that never trained on the recording.

Three folds of hand-made shards (tests.helpers.shard_factory.three_kind_folds: recording rec{k}_{i} lies in
fold k). Each fold's "model" is a real Keras model whose scores are a fingerprint of the fold it validated
on (score 0.98 for class 20 + k, 0.02 elsewhere), saved as the run's best.keras; the run dirs are named
so that no dir name matches its fold. So a sidecar row's argmax names the model that scored it.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core import fs
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import RATE, small_config
from trainer.data import discovery, soft_targets
from trainer.inference.predict import PredictConfig
from trainer.pseudo import label
from trainer.recipe import config as config_lib
from trainer.training import run_guard
from trainer.training import run_layout as layout

C = 24
FINGERPRINT = 20  # model of fold k scores class 20 + k high


def _fingerprint_run(run_dir: str, shards: str, fold: int, cfg) -> None:
    fs.makedirs(run_dir)
    config_lib.save_config(cfg, layout.path(run_dir, layout.CONFIG))
    inputs = keras.Input(discovery.input_shape(cfg))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    bias = np.full(C, -4.0, np.float32)
    bias[FINGERPRINT + fold] = 4.0
    out = keras.layers.Dense(C, activation="sigmoid", kernel_initializer="zeros",
                             bias_initializer=keras.initializers.Constant(bias))(pooled)
    keras.Model(inputs, out).save(layout.path(run_dir, layout.BEST_MODEL))
    fs.write_json(layout.path(run_dir, layout.SUMMARY), run_guard.identity(shards, fold))


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pseudo")
    shards = sf.write_shards(str(root / "shards"), sf.three_kind_folds(), sample_rate=RATE, slice_seconds=2.0)
    cfg = small_config()
    names = {"fold0": 2, "fold1": 0, "other": 1}  # dir name -> the fold the run validated on
    for name, fold in names.items():
        _fingerprint_run(str(root / "runs" / name), shards, fold, cfg)
    return shards, {fold: str(root / "runs" / name) for name, fold in names.items()}, root


def _fold_of_recording(recording_id: str) -> int:
    return 0 if recording_id == "short" else int(recording_id[3])


def test_pseudo_labels_come_only_from_the_model_that_never_trained_on_the_recording(fold_runs):
    shards, run_of_fold, root = fold_runs
    out = str(root / "round1" / soft_targets.FILE)
    summary = label.pseudo_label(shards, list(run_of_fold.values()), out, PredictConfig(batch_size=4))
    table = soft_targets.read(out, C)
    scores = table[soft_targets.score_columns(C)].to_numpy()
    scored_by = scores.argmax(axis=1) - FINGERPRINT  # the fold the scoring model validated on
    folds_of = np.array([_fold_of_recording(r) for r in table[soft_targets.ID]])
    trained_on = {k: {0, 1, 2} - {k} for k in range(3)}  # a fold's model trains on every other fold
    assert all(folds_of[i] not in trained_on[scored_by[i]] for i in range(len(table)))
    np.testing.assert_array_equal(scored_by, folds_of)
    np.testing.assert_array_equal(table[soft_targets.FOLD], folds_of)
    # every slice's recording of every fold is scored: tp, fp and background slices alike
    expected_ids = {f"rec{k}_{i}" for k in range(3) for i in range(4 if k else 3)} | {"short"}
    assert set(table[soft_targets.ID]) == expected_ids
    # windows: 1 s every 0.5 s over 2 s slices at 0 (tp, fp) and 2 s (background): starts 0..48000
    assert set(table[soft_targets.START]) <= {0, 8000, 16000, 32000, 40000, 48000}
    assert (table[soft_targets.LENGTH] == RATE).all()
    assert not table.duplicated([soft_targets.ID, soft_targets.START]).any()
    assert summary["runs"] == {str(k): d for k, d in sorted(run_of_fold.items())}
    assert fs.isfile(label.meta_path(out))


def test_two_runs_of_one_fold_or_runs_of_other_shards_are_refused(fold_runs, tmp_path):
    shards, run_of_fold, _ = fold_runs
    twin = str(tmp_path / "twin")
    _fingerprint_run(twin, shards, 0, small_config())
    with pytest.raises(label.UserError, match="both validated on fold 0"):
        label.runs_by_fold([run_of_fold[0], twin], shards)
    other = sf.write_shards(str(tmp_path / "other"), sf.three_kind_folds(num_folds=2), sample_rate=RATE,
                            slice_seconds=2.0)
    with pytest.raises(label.UserError, match="other shards"):
        label.runs_by_fold([run_of_fold[0]], other)


def test_a_slice_filed_under_another_fold_is_refused():
    slices = iter([{"recording_id": "x", "fold": 1, "slice_start": 0, "waveform": np.zeros(RATE, np.float32)}])
    with pytest.raises(label.UserError, match="may have trained on it"):
        label.score_slices(slices, 0, lambda w: np.zeros((len(w), C), np.float32), RATE, RATE // 2, 4)
