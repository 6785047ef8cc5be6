"""trainer.training.train end to end on the tiny shards: a run killed after epoch 1 under MirroredStrategy resumes.

One scenario covers three acceptance points at the cost of two ResNet50 traces (the dominant cost
on a CPU): a subprocess with two logical CPU devices trains under MirroredStrategy and kills itself
(SIGKILL) right after epoch 1 is backed up; the same run is then resumed in-process and must
finish epoch 2 only, leaving every output in run_dir.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from tests.helpers.interrupt import InterruptAfter
from tests.helpers.recipe_config import as_config_file_content, recipe_config
from trainer.data import discovery
from trainer.evaluation.lwlrap import lwlrap, recording_lwlrap
from trainer.recipe import config
from trainer.training import callbacks as callbacks_lib
from trainer.training import run_layout as layout
from trainer.training import train, validation

# Runs in a fresh interpreter: logical devices must be configured before TensorFlow initialises.
_KILLED_RUN = """
import logging, os, signal, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from trainer.training import train

class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):  # runs after the run's own callbacks saved the epoch
        os.kill(os.getpid(), signal.SIGKILL)

logging.basicConfig(level=logging.INFO)
args, cfg = train.parse_args(sys.argv[1:])
train.train_fold(cfg, args.shards_dir, args.fold, args.run_dir, callbacks=[KillAfterFirstEpoch()])
"""


# The tiny preset's sizes, every recipe setting explicit (tests/helpers/recipe_config.py). Per-replica batch 4:
# the mirrored run's global batch 8 fits the tp training slices of fold 0.
RECIPE = recipe_config({"batch_size": 4, "epochs": 2, "steps_per_epoch": 2, "monitor": "val_rec_lwlrap", "verbose": 0})


def _argv(shards: str, run_dir: str, strategy: str, settings: str) -> list[str]:
    return ["--shards_dir", shards, "--fold", "0", "--run_dir", run_dir, "--preset", "tiny", "--config", settings,
            "--strategy", strategy]


def _history(run_dir: str) -> pd.DataFrame:
    return pd.read_csv(os.path.join(run_dir, "history.csv"))


def test_killed_mirrored_run_resumes_and_writes_every_output(tiny_shards, tmp_path):
    run_dir = str(tmp_path / "run")
    settings = tmp_path / "recipe.json"
    settings.write_text(json.dumps(as_config_file_content(RECIPE)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN,
                             *_argv(tiny_shards, run_dir, "mirrored", str(settings))],
                            capture_output=True, text=True, env=env, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "mirrored strategy x 2 replicas, global batch 8" in killed.stderr
    assert json.loads((tmp_path / "run" / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert list(_history(run_dir)["epoch"]) == [0]
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    # best.keras (epoch 0, trained and validated on 2 replicas) re-scored here on one device gives the
    # loss the mirrored validation logged: every replica scored with the statistics the file holds.
    killed_cfg = config.load_run_config(run_dir)
    fold = discovery.prepare_fold(tiny_shards, 0, killed_cfg)
    validator = validation.RecordingValidation(fold.val_files, killed_cfg, batch_size=8, num_examples=fold.num_val)
    validator.set_model(keras.saving.load_model(os.path.join(run_dir, "best.keras"), compile=False))
    meta, scores = validator.predict()
    rescored = validation.metrics(meta["recording_id"], meta["y"], scores, 24)
    assert rescored["val_loss"] == pytest.approx(_history(run_dir)["val_loss"][0], rel=1e-4)

    # Same command (only the strategy differs: this process has one CPU device) -> resumes at epoch 2.
    args, cfg = train.parse_args(_argv(tiny_shards, run_dir, "auto", str(settings)))
    summary = train.train_fold(cfg, args.shards_dir, args.fold, args.run_dir)
    assert summary["resumed_from_epoch"] == 1 and summary["epochs_run"] == 2
    history = _history(run_dir)
    assert list(history["epoch"]) == [0, 1]  # epoch 0 from the killed run, epoch 1 from this one

    manifest = json.loads(open(os.path.join(tiny_shards, "manifest.json")).read())
    per_fold = manifest["counts"]["train_examples_per_fold"]  # every slice kind
    per_kind = manifest["counts"]["train_examples_per_fold_kind"]
    num_val = per_fold["0"]
    assert summary["num_val_examples"] == num_val
    assert summary["num_val_examples_by_kind"] == {k: n for k, n in per_kind["0"].items() if n}
    assert summary["num_train_examples"] == sum(n for k, n in per_fold.items() if k != "0")
    assert summary["num_train_examples_by_kind"] == {
        kind: sum(counts[kind] for k, counts in per_kind.items() if k != "0") for kind in ("tp", "fp", "background")}
    assert summary["fold"] == 0 and summary["strategy"] == "default" and summary["global_batch_size"] == 4
    assert summary["monitor"] == "val_rec_lwlrap" and summary["steps_per_epoch"] == 2
    assert summary["best_val_rec_lwlrap"] == pytest.approx(history["val_rec_lwlrap"].max(), abs=1e-9)
    assert summary["best_epoch"] == int(history["val_rec_lwlrap"].idxmax()) + 1
    assert {"loss", "lwlrap", "val_loss", "val_lwlrap", "val_rec_lwlrap"} <= set(history.columns)

    predictions = pd.read_csv(os.path.join(run_dir, "val_predictions.csv"), dtype={"recording_id": str})
    classes = range(24)
    assert list(predictions.columns) == (["recording_id", "kind", "row_index", "slice_start", "fold", "offset"]
                                         + [f"y{c}" for c in classes] + [f"w{c}" for c in classes]
                                         + [f"s{c}" for c in classes])
    assert len(predictions) == num_val and set(predictions["fold"]) == {0}
    assert predictions["kind"].value_counts().to_dict() == {k: n for k, n in per_kind["0"].items() if n}
    folds = pd.read_csv(os.path.join(tiny_shards, "folds.csv"), dtype={"recording_id": str})
    fold0 = set(folds.loc[folds["fold"] == 0, "recording_id"])
    assert set(predictions["recording_id"]) <= fold0
    truth = predictions[[f"y{c}" for c in classes]].to_numpy()
    scores = predictions[[f"s{c}" for c in classes]].to_numpy()
    tp = (predictions["kind"] == "tp").to_numpy()
    assert (truth[tp].sum(axis=1) >= 1).all() and ((scores >= 0) & (scores <= 1)).all()
    background = (predictions["kind"] == "background").to_numpy()
    assert (truth[background].sum(axis=1) == 0).all()  # background slices overlap no tp box
    assert summary["val_lwlrap"] == pytest.approx(lwlrap(truth, scores), abs=1e-12)
    assert summary["val_rec_lwlrap"] == pytest.approx(
        recording_lwlrap(predictions["recording_id"].to_numpy(), truth, scores), abs=1e-12)
    # best.keras re-scored on the validation set reproduces the metric logged for its epoch.
    assert summary["val_rec_lwlrap"] == pytest.approx(summary["best_val_rec_lwlrap"], abs=1e-4)

    assert config.load_run_config(run_dir) == train.resolve_mel_device(cfg)  # --mel.device auto resolved
    assert config.load_run_config(run_dir).mel.device == summary["mel_device"] != "auto"
    best = keras.saving.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    frames = 1 + int(round(cfg.window_seconds * cfg.mel.sample_rate)) // cfg.mel.hop_length
    assert best.input_shape == (None, cfg.mel.n_mels, frames, 1) and best.output_shape == (None, 24)
    last = os.path.join(run_dir, "checkpoints", "last.weights.h5")
    with h5py.File(last, "r") as f:
        assert "optimizer" not in f and "layers" in f  # weights only; the optimizer state was in backup/
    best.load_weights(last)  # fits the run's architecture
    assert any(name.startswith("events.out.tfevents") for _, _, names in os.walk(os.path.join(run_dir, "logs"))
               for name in names)
    with open(os.path.join(run_dir, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(os.path.join(run_dir, "backup"))  # removed once the run is complete
    written = [os.path.join(d, n) for d, _, names in os.walk(run_dir) for n in names]
    assert max(written, key=os.path.getmtime).endswith("summary.json")  # written last
    assert json.loads(open(os.path.join(run_dir, "summary.json")).read()) == summary

    # A finished run_dir is not trained again by accident.
    with pytest.raises(UserError, match="already holds a finished run"):
        train.train_fold(cfg, args.shards_dir, args.fold, args.run_dir)


def test_damaged_backup_metadata_is_a_user_error(tmp_path):
    """A run killed while BackupAndRestore wrote its metadata cannot resume: say so, suggest --overwrite."""
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epo')
    with pytest.raises(UserError, match="--overwrite"):
        train.prepare_run_dir(str(tmp_path / "run"), RECIPE, overwrite=False)
    assert train.prepare_run_dir(str(tmp_path / "run"), RECIPE, overwrite=True) == 0


def test_an_interrupted_run_resumes_only_in_its_log_mel_placement(tmp_path):
    """The backup holds the training model of one --mel.device placement; another is refused up front."""
    run_dir = tmp_path / "run"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": -1}')
    on_model = config.apply_overrides(RECIPE, {"mel": {"device": "model"}})
    config.save_config(on_model, str(run_dir / "config.json"))
    with pytest.raises(UserError, match=r"mel.device: 'model' -> 'host'"):
        on_host = config.apply_overrides(RECIPE, {"mel": {"device": "host"}})
        train.prepare_run_dir(str(run_dir), on_host, overwrite=False)
    assert train.prepare_run_dir(str(run_dir), on_model, overwrite=False) == 1


# Monitored values of an early-stopped run (patience 3, mode max): best at epoch 1, then three epochs
# without improvement, so an uninterrupted run stops after epoch 4 (0-based).
SCRIPTED_MONITOR = [0.5, 0.6, 0.55, 0.58, 0.59, 0.7, 0.8, 0.9]


class ScriptMonitor(keras.callbacks.Callback):
    """Puts SCRIPTED_MONITOR[epoch] into the epoch's logs as "val_score" (first, as the validation does)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = SCRIPTED_MONITOR[epoch]


def _fit_small(run_dir: str, initial_epoch: int, extra: list) -> keras.callbacks.History:
    """A Dense model fitted with the callbacks of trainer.training.train that carry a run across an interruption."""
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    net.compile(optimizer="adam", loss="mse")
    history = layout.read_history(run_dir, "val_score")
    past = list(history.loc[history["epoch"] < initial_epoch, "val_score"])
    callbacks = [ScriptMonitor(), keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
                 callbacks_lib.ResumableEarlyStopping(past, monitor="val_score", mode="max", patience=3),
                 keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"), delete_checkpoint=False), *extra]
    return net.fit(np.ones((4, 3)), np.zeros(4), epochs=len(SCRIPTED_MONITOR), verbose=0, callbacks=callbacks)


def test_early_stopping_patience_counts_across_an_interruption(tmp_path):
    run_dir = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _fit_small(run_dir, 0, [InterruptAfter(2)])
    initial_epoch = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"]
    assert initial_epoch == 3
    resumed = _fit_small(run_dir, initial_epoch, [])
    # Epochs 3 and 4 run, and the patience count of epochs 2-4 stops the run as if never interrupted;
    # a count restarted at the resumption would have run on to epoch 6.
    assert resumed.epoch == [3, 4]
    assert list(layout.read_history(run_dir, "val_score")["epoch"]) == [0, 1, 2, 3, 4]


def test_resumable_early_stopping_replays_the_past_epochs():
    stopping = callbacks_lib.ResumableEarlyStopping([0.5, 0.6, 0.55], monitor="val_score", mode="max", patience=3)
    stopping.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stopping.on_train_begin()
    assert (stopping.wait, stopping.best, stopping.best_epoch) == (1, 0.6, 1)


def test_a_run_that_had_stopped_early_is_not_trained_further_on_resume():
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    # best 0.6 at epoch 1, then 3 epochs without improvement: patience 3 was reached before the kill.
    stopped = callbacks_lib.ResumableEarlyStopping([0.5, 0.6, 0.55, 0.58, 0.59], monitor="val_score", mode="max",
                                           patience=3)
    assert stopped.stopped_before(net)
    assert not net.stop_training  # left for fit to decide, were it called
    going = callbacks_lib.ResumableEarlyStopping([0.5, 0.6, 0.55, 0.58], monitor="val_score", mode="max", patience=3)
    assert not going.stopped_before(net)
