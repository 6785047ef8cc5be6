"""Recording-level validation in a real trainer.training.train run, with the epochs' scores scripted.

One train_fold run (ResNet50 at small shapes, 3 epochs of 1 step, band_norm and freq_channel on,
`--preset auto` with every setting given by a config file) on hand-built v2 shards. A callback sets
the output layer to a constant score vector at the end of each epoch's training (kernel 0, bias =
logit(scores)), so the model the validation sees is known exactly: the three metrics the
RecordingValidation callback logs are checked against a computation by hand (numpy masked BCE,
sklearn LWLRAP, max per recording with pandas) and the scripted scores are chosen so that
val_loss (the monitor here) picks the middle epoch while val_rec_lwlrap would pick the last.
"""
from __future__ import annotations

import json
import logging
import os

import keras
import numpy as np
import pandas as pd
import pytest

from core import schema
from tests.helpers import shard_factory as sf
from tests.helpers.common import sklearn_lwlrap
from tests.helpers.recipe_config import (
    FRAMES,
    N_MELS,
    RATE,
    as_config_file_content,
    small_config,
)
from trainer.training import train, validation

C = 24
UNLABELLED_WEIGHT = 0.5
SLICE = 32000

# Validation fold 0: (recording, kind, species, event) -> what the centred window knows, by hand.
VAL = [("a", "tp", 0, (0.2, 0.4)), ("a", "tp", 1, (1.2, 1.5)), ("a", "background", -1, None),
       ("b", "tp", 2, (0.5, 0.8)), ("b", "fp", 0, (0.5, 0.7)), ("c", "fp", 3, (0.5, 0.7))]


def _scores(head: list[float], rest: float) -> np.ndarray:
    s = np.full(C, rest)
    s[:len(head)] = head
    return s


# Epoch 0: everything tied; epoch 1: lowest loss; epoch 2: best ranking (highest recording LWLRAP).
EPOCH_SCORES = [_scores([], 0.5), _scores([0.3, 0.3, 0.3, 0.02], 0.02), _scores([0.9, 0.8, 0.7, 0.05], 0.05)]


def _val_examples() -> list[dict]:
    out = []
    for i, (rec, kind, species, event) in enumerate(VAL):
        a, b = event or (0.0, 0.0)
        out.append(sf.train_example(rec, 0, species=species, t_min=a, t_max=b, audio=sf.ramp(SLICE),
                                    sample_rate=RATE, row_index=i if kind != "background" else schema.NO_ROW,
                                    kind=kind))
    return out


def _train_examples(fold: int) -> list[dict]:
    out = [sf.train_example(f"t{fold}{s}", fold, species=s, t_min=0.3, t_max=0.6, audio=sf.ramp(SLICE),
                            sample_rate=RATE, row_index=10 * fold + s) for s in range(4)]
    out.append(sf.train_example(f"t{fold}0", fold, species=1, t_min=0.3, t_max=0.6, audio=sf.ramp(SLICE),
                                sample_rate=RATE, row_index=50 + fold, kind=schema.KIND_FP))
    out.append(sf.train_example(f"t{fold}1", fold, species=-1, t_min=0.0, t_max=0.0, audio=sf.ramp(SLICE),
                                sample_rate=RATE, kind=schema.KIND_BACKGROUND))
    return out


def _expected_targets() -> tuple[np.ndarray, np.ndarray]:
    """labels, weights [6, C] of the centred validation windows (every event lies wholly inside its window)."""
    labels, weights = np.zeros((len(VAL), C)), np.full((len(VAL), C), UNLABELLED_WEIGHT)
    for i, (_, kind, species, _) in enumerate(VAL):
        if kind == "tp":
            labels[i, species] = 1.0
        if species >= 0:
            weights[i, species] = 1.0
    return labels, weights


_sklearn_lwlrap = sklearn_lwlrap


def _by_hand(recordings: np.ndarray, labels: np.ndarray, weights: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    loss = float(np.mean(np.mean(weights * -(labels * np.log(p) + (1 - labels) * np.log(1 - p)), axis=1)))
    columns = [f"c{k}" for k in range(C)]
    rec_labels = pd.DataFrame(labels, columns=columns).groupby(recordings).max()
    rec_scores = pd.DataFrame(scores, columns=columns).groupby(recordings).max()
    return {"val_loss": loss, "val_lwlrap": _sklearn_lwlrap(labels, scores),
            "val_rec_lwlrap": _sklearn_lwlrap(rec_labels.to_numpy(), rec_scores.loc[rec_labels.index].to_numpy())}


class ScriptedScores(keras.callbacks.Callback):
    """After every training batch, the output layer scores every input EPOCH_SCORES[epoch]."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        layer = self.model.get_layer("scores")
        s = EPOCH_SCORES[self.epoch]
        layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
        layer.bias.assign(np.log(s / (1 - s)).astype(np.float32))


@pytest.fixture(scope="module")
def run(module_tmp_path):
    base = module_tmp_path
    shards = sf.write_shards(str(base / "shards"), {0: _val_examples(), 1: _train_examples(1), 2: _train_examples(2)},
                             sample_rate=RATE, slice_seconds=2.0)
    cfg = small_config(epochs=3, steps_per_epoch=1, batch_size=4, unlabelled_weight=UNLABELLED_WEIGHT,
                       monitor="val_loss", patience=0, band_norm=True, freq_channel=True, mel={"scaling": "db"})
    cfg_file = base / "settings.json"
    cfg_file.write_text(json.dumps(as_config_file_content(cfg)))
    run_dir = str(base / "run")
    log = logging.getLogger("trainer.recipe.config")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        args, resolved = train.parse_args(["--shards_dir", shards, "--fold", "0", "--run_dir", run_dir,
                                           "--preset", "auto", "--config", str(cfg_file)])
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    summary = train.train_fold(resolved, args.shards_dir, args.fold, args.run_dir, callbacks=[ScriptedScores()])
    return {"summary": summary, "run_dir": run_dir, "cfg": cfg, "resolved": resolved,
            "auto_lines": [r.getMessage() for r in records]}


def test_auto_preset_is_resolved_once_and_recorded(run):
    assert len(run["auto_lines"]) == 1 and "cpu" in run["auto_lines"][0]
    saved = json.loads(open(os.path.join(run["run_dir"], "config.json")).read())
    assert saved["from_preset"] == "cpu" and run["summary"]["preset"] == "cpu"
    # Every other setting came from the config file, --mel.device auto resolved as the preset was.
    assert saved["mel"]["device"] == run["summary"]["mel_device"] != "auto"
    assert ({k: v for k, v in saved.items() if k != "from_preset"}
            == as_config_file_content(train.resolve_mel_device(run["cfg"])))


def test_every_epoch_logs_the_three_metrics_computed_by_hand(run):
    history = pd.read_csv(os.path.join(run["run_dir"], "history.csv"))
    assert list(history["epoch"]) == [0, 1, 2]
    labels, weights = _expected_targets()
    recordings = np.array([v[0] for v in VAL])
    for epoch, scores in enumerate(EPOCH_SCORES):
        expected = _by_hand(recordings, labels, weights, np.tile(scores, (len(VAL), 1)))
        for key, value in expected.items():
            assert history.loc[epoch, key] == pytest.approx(value, abs=1e-5), (epoch, key)
    # The design: val_loss is lowest at epoch 1, recording LWLRAP highest at epoch 2, and slice and
    # recording LWLRAP differ (so confusing them would show).
    assert history["val_loss"].idxmin() == 1 and history["val_rec_lwlrap"].idxmax() == 2
    assert (history["val_lwlrap"] - history["val_rec_lwlrap"]).abs().min() > 0.01


def test_checkpoint_follows_the_monitor(run):
    summary = run["summary"]
    assert summary["monitor"] == "val_loss" and summary["best_epoch"] == 2  # 1-based: epoch index 1
    x = np.random.default_rng(0).normal(size=(2, N_MELS, FRAMES, 1)).astype(np.float32)
    best = keras.saving.load_model(os.path.join(run["run_dir"], "best.keras"), compile=False)
    np.testing.assert_allclose(best.predict(x, verbose=0), np.tile(EPOCH_SCORES[1], (2, 1)), atol=1e-6)
    best.load_weights(os.path.join(run["run_dir"], "checkpoints", "last.weights.h5"))  # the last epoch's weights
    np.testing.assert_allclose(best.predict(x, verbose=0), np.tile(EPOCH_SCORES[2], (2, 1)), atol=1e-6)


def test_val_predictions_csv_holds_every_slice_and_reproduces_the_summary(run):
    table = pd.read_csv(os.path.join(run["run_dir"], "val_predictions.csv"), dtype={"recording_id": str})
    classes = range(C)
    assert list(table.columns) == (["recording_id", "kind", "row_index", "slice_start", "fold", "offset"]
                                   + [f"y{c}" for c in classes] + [f"w{c}" for c in classes]
                                   + [f"s{c}" for c in classes])
    assert sorted(zip(table["recording_id"], table["kind"])) == sorted((v[0], v[1]) for v in VAL)
    order = [next(i for i, v in enumerate(VAL) if (v[0], v[1], i if v[1] != "background" else -1) == key)
             for key in zip(table["recording_id"], table["kind"], table["row_index"])]
    labels, weights = _expected_targets()
    y = table[[f"y{c}" for c in classes]].to_numpy()
    w = table[[f"w{c}" for c in classes]].to_numpy()
    s = table[[f"s{c}" for c in classes]].to_numpy()
    np.testing.assert_array_equal(y, labels[order])
    np.testing.assert_allclose(w, weights[order])
    np.testing.assert_allclose(s, np.tile(EPOCH_SCORES[1], (len(VAL), 1)), atol=1e-6)  # the best epoch's model
    expected = _by_hand(table["recording_id"].to_numpy(), y, w, s)
    summary = run["summary"]
    history = pd.read_csv(os.path.join(run["run_dir"], "history.csv"))
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=1e-9), key
        assert summary[f"best_{key}"] == pytest.approx(history.loc[1, key], abs=1e-9), key
    assert summary["num_val_examples_by_kind"] == {"tp": 3, "fp": 2, "background": 1}
    assert summary["num_val_recordings"] == 3 and summary["epochs_run"] == 3
    assert summary["num_train_examples_by_kind"] == {"tp": 8, "fp": 2, "background": 2}


def test_metrics_of_a_fold_without_positives_are_nan_not_an_error():
    y = np.concatenate([np.zeros((3, C)), np.ones((3, C))], axis=1)
    result = validation.metrics(np.array(["a", "a", "b"]), y, np.full((3, C), 0.25), C)
    assert np.isnan(result["val_lwlrap"]) and np.isnan(result["val_rec_lwlrap"])
    assert result["val_loss"] == pytest.approx(-np.log(0.75))
