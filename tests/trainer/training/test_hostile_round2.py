"""Hostile input, round 2 (issue 16), the trainer: no output lands in a shards dir or another run dir,
resume and cv never mix folds or shards, one trainer per run dir, a damaged backup or shard is caught,
clear errors. (The Beam job's cases: tests/pipeline/test_hostile_round2.py.)

Data: the session's tiny shards (tests/conftest.py) and copies of them; damaged files are made here by
plain file operations. No test trains a ResNet: the run-dir tests stop a real
trainer.training.train before its first step (StopAtTrainBegin) or drive trainer.training.train's own callbacks with a
one-layer model.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from tests.helpers.recipe_config import recipe_config
from tests.helpers.round2 import (
    CFG,
    _fake_finished_run,
    _snapshot,
)
from trainer.inference import predict
from trainer.training import callbacks as callbacks_lib
from trainer.training import cv, report, runs, train
from trainer.training import run_layout as layout


class Stop(Exception):
    pass


class StopAtTrainBegin(keras.callbacks.Callback):
    """Ends trainer.training.train before its first step (everything before fit has run)."""

    def on_train_begin(self, logs=None):
        raise Stop()


# ---- 1, 2: pipeline.shards --overwrite removes only a shards job's output ----





# ---- 3: no output lands inside a shards dir or another command's run dir ----

def test_predict_refuses_outputs_inside_the_shards_dir(tiny_shards, tmp_path):
    shards_copy = str(tmp_path / "shards")
    shutil.copytree(tiny_shards, shards_copy)
    before = _snapshot(shards_copy)
    for name in ("test_truth.csv", "manifest.json", "submission.csv"):
        with pytest.raises(UserError, match="inside the shards dir"):
            predict.predict([str(tmp_path / "no_run")], shards_copy, os.path.join(shards_copy, name))
    assert _snapshot(shards_copy) == before


def test_train_refuses_a_shards_dir_as_run_dir(tiny_shards, tmp_path):
    shards_copy = str(tmp_path / "shards")
    shutil.copytree(tiny_shards, shards_copy)
    before = _snapshot(shards_copy)
    for run_dir in (shards_copy, os.path.join(shards_copy, "run")):
        with pytest.raises(UserError, match="shards dir"):
            train.train_fold(CFG, shards_copy, 0, run_dir, callbacks=[StopAtTrainBegin()])
    with pytest.raises(UserError, match="shards dir"):
        cv.run_cv(CFG, shards_copy, [0], os.path.join(shards_copy, "runs"))
    assert _snapshot(shards_copy) == before


# ---- 7: resume and cv compare the fold and the shards ----

def test_resume_refuses_another_fold_or_other_shards(tiny_shards, tmp_path):
    run_dir = str(tmp_path / "run")
    with pytest.raises(Stop):  # a fold-0 run, prepared and stopped where training would start
        train.train_fold(CFG, tiny_shards, 0, run_dir, callbacks=[StopAtTrainBegin()])
    # What BackupAndRestore leaves after epoch 1 when the run is killed.
    os.makedirs(os.path.join(run_dir, "backup"), exist_ok=True)
    with open(os.path.join(run_dir, "backup", "training_metadata.json"), "w") as f:
        json.dump({"epoch": 1, "batch": -1}, f)
    pd.DataFrame({"epoch": [0], "loss": [1.0], "val_loss": [1.0], "val_lwlrap": [0.5], "val_rec_lwlrap": [0.5]}
                 ).to_csv(os.path.join(run_dir, "history.csv"), index=False)
    with pytest.raises(UserError, match="interrupted run of fold 0, not 1"):
        train.train_fold(CFG, tiny_shards, 1, run_dir, callbacks=[StopAtTrainBegin()])
    other = str(tmp_path / "other_shards")
    shutil.copytree(tiny_shards, other)
    manifest = json.load(open(os.path.join(other, "manifest.json")))
    manifest["fold_seed"] = manifest.get("fold_seed", 0) + 1  # other shards: another manifest
    json.dump(manifest, open(os.path.join(other, "manifest.json"), "w"))
    with pytest.raises(UserError, match="interrupted run of shards"):
        train.train_fold(CFG, other, 0, run_dir, callbacks=[StopAtTrainBegin()])
    assert json.load(open(os.path.join(run_dir, "backup", "training_metadata.json")))["epoch"] == 1  # kept


def test_cv_refuses_a_complete_fold_of_other_shards(tiny_shards, tmp_path):
    runs_root = tmp_path / "runs"
    _fake_finished_run(runs_root / "fold0", fold=0, shards_dir="/somewhere/else", shards_id="ffffffffffffffff")
    with pytest.raises(UserError, match="complete but was trained on shards /somewhere/else"):
        cv.run_cv(CFG, tiny_shards, [0], str(runs_root))


def _fold_outputs(run_dir, fold, shards_dir, shards_id, num_classes=24):
    """val_predictions.csv, history.csv and summary.json of a finished fold (2 recordings, 2 species)."""
    os.makedirs(run_dir, exist_ok=True)
    rows = []
    for i, species in enumerate((fold, fold + 1)):
        y = np.eye(num_classes)[species]
        rows.append({"recording_id": f"r{fold}{i}", "kind": "tp", "row_index": i, "slice_start": 0, "fold": fold,
                     "offset": 0, **{f"y{c}": y[c] for c in range(num_classes)},
                     **{f"w{c}": 1.0 for c in range(num_classes)},
                     **{f"s{c}": 0.9 * y[c] + 0.01 * c for c in range(num_classes)}})
    pd.DataFrame(rows).to_csv(os.path.join(run_dir, layout.VAL_PREDICTIONS), index=False)
    pd.DataFrame({"epoch": [0], "val_rec_lwlrap": [1.0]}).to_csv(os.path.join(run_dir, layout.HISTORY), index=False)
    with open(os.path.join(run_dir, layout.SUMMARY), "w") as f:
        json.dump({"fold": fold, "shards_dir": shards_dir, "shards_id": shards_id}, f)
    return str(run_dir)


def test_cv_report_names_its_shards_and_refuses_folds_of_different_shards(tmp_path):
    same = {k: _fold_outputs(tmp_path / "a" / f"fold{k}", k, "/data/shards/x", "aaaa") for k in (0, 1)}
    result = report.write_cv_report(same, str(tmp_path / "a" / "cv"))
    written = json.load(open(tmp_path / "a" / "cv" / "report.json"))
    assert (result["shards_dir"], result["shards_id"]) == (written["shards_dir"], written["shards_id"]) == (
        "/data/shards/x", "aaaa")
    mixed = {0: _fold_outputs(tmp_path / "b" / "fold0", 0, "/data/shards/x", "aaaa"),
             1: _fold_outputs(tmp_path / "b" / "fold1", 1, "/data/shards/y", "bbbb")}
    with pytest.raises(UserError, match="different shards"):
        report.write_cv_report(mixed, str(tmp_path / "b" / "cv"))


# ---- 5: one trainer.training.train per run dir ----

def test_a_second_train_into_a_run_dir_in_use_is_refused(tiny_shards, tmp_path):
    from trainer.training import run_guard

    run_dir = str(tmp_path / "run")
    with run_guard.locked(run_dir, tiny_shards, 0):  # the first run holds it
        with pytest.raises(UserError, match="in use by another run of trainer.training.train"):
            train.train_fold(CFG, tiny_shards, 0, run_dir, callbacks=[StopAtTrainBegin()])
        assert os.listdir(run_dir) == [run_guard.LOCK_NAME]  # the refused run wrote nothing
    assert not os.path.exists(run_dir)
    # A killed run's lock (its pid gone) does not stand in the way of resuming it.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, run_guard.LOCK_NAME), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": int(gone.stdout), "started": "earlier", "command": "killed",
                   "token": "t"}, f)
    with pytest.raises(Stop):  # got past the lock, to where training starts
        train.train_fold(CFG, tiny_shards, 0, run_dir, callbacks=[StopAtTrainBegin()])
    assert not os.path.exists(os.path.join(run_dir, run_guard.LOCK_NAME))  # released


# ---- 4: a kill while the backup is written resumes from the previous epoch ----

class ValidatorStandIn(keras.callbacks.Callback):
    """Puts the monitored metric into each epoch's logs, first, as trainer.training.validation does."""

    def on_epoch_end(self, epoch, logs=None):
        logs.update({"val_rec_lwlrap": 0.1 * epoch, "val_lwlrap": 0.0, "val_loss": 1.0})


class KillAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):  # after the run's own callbacks saved the epoch
        if epoch == self.epoch:
            raise Stop()


def _fit_with_train_callbacks(run_dir, epochs, extra=()):
    """A one-layer model fitted with trainer.training.train's callbacks (backup, history, checkpoints)."""
    cfg = recipe_config({"epochs": epochs, "verbose": 0})
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    net.compile(optimizer="adam", loss="mse")
    callbacks = callbacks_lib.run_callbacks(run_dir, cfg, layout.read_history(run_dir).iloc[0:0], ValidatorStandIn())
    return net.fit(np.ones((4, 3)), np.zeros(4), epochs=epochs, verbose=0, callbacks=callbacks + list(extra))


@pytest.mark.parametrize("damaged", ["latest.weights.h5", "training_metadata.json"])
def test_a_kill_while_the_backup_is_written_resumes_from_the_previous_epoch(tmp_path, damaged):
    run_dir = str(tmp_path / "run")
    with pytest.raises(Stop):
        _fit_with_train_callbacks(run_dir, 4, [KillAfter(1)])  # epochs 0 and 1 done and backed up
    path = os.path.join(run_dir, "backup", damaged)
    data = open(path, "rb").read()
    with open(path, "wb") as f:  # the kill came while this file was being written
        f.write(data[: len(data) // 3])
    assert train.prepare_run_dir(run_dir, recipe_config({"epochs": 4, "verbose": 0}), overwrite=False) == 1
    resumed = _fit_with_train_callbacks(run_dir, 4)
    assert resumed.epoch == [1, 2, 3]


# ---- 15: a best.keras naming a function Keras refuses is one error line ----

@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval")])
def test_a_model_naming_a_refused_function_is_a_user_error(tmp_path, module, name):
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(str(tmp_path / "good.keras"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with zipfile.ZipFile(tmp_path / "good.keras") as good, zipfile.ZipFile(run_dir / "best.keras", "w") as bad:
        for item in good.namelist():
            data = good.read(item)
            if item == "config.json":
                doc = json.loads(data)
                doc["config"]["layers"][0].update({"module": module, "class_name": name})
                data = json.dumps(doc).encode()
            bad.writestr(item, data)
    with pytest.raises(UserError, match="cannot load .*best.keras"):
        runs.load_model(runs.Run(str(run_dir), CFG))


# ---- 12, 13: one bad row is a dead letter for that row only ----











# ---- 14: sample_submission.csv is checked before the job launches ----



# ---- 9: a FLAC with an ID3v1 trailer is good audio ----



# ---- 10, 11: only regular files inside the data dir are read, within a size bound, without a hang ----



# ---- 8: training-side reads check the manifest's counts ----

def _cut_last_record(path: str) -> None:
    """Rewrites a TFRecord file without its last record: cut at a record boundary, framing intact."""
    import tensorflow as tf

    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    with tf.io.TFRecordWriter(path) as writer:
        for r in records[:-1]:
            writer.write(r)


@pytest.mark.parametrize("damage", ["shard_cut_at_a_record_boundary", "manifest_count_raised"])
def test_training_reads_check_the_manifest_counts(tmp_path, damage):
    from tests.helpers import shard_factory
    from tests.helpers.recipe_config import small_config
    from trainer.data import discovery as data
    from trainer.data import inputs

    shards_dir = shard_factory.write_shards(str(tmp_path / "shards"), shard_factory.three_kind_folds(),
                                            sample_rate=16000, slice_seconds=2.0)
    if damage == "manifest_count_raised":
        manifest = json.load(open(os.path.join(shards_dir, "manifest.json")))
        manifest["counts"]["train_examples_per_fold_kind"]["1"]["fp"] += 1
        manifest["counts"]["train_examples_per_fold"]["1"] += 1
        json.dump(manifest, open(os.path.join(shards_dir, "manifest.json"), "w"))
    cfg = small_config(negative_fraction=0.5)
    fold = data.prepare_fold(shards_dir, 0, cfg)
    if damage == "shard_cut_at_a_record_boundary":
        _cut_last_record(fold.train_files_by_kind["tp"][0])
    stream = inputs.train_dataset(fold.train_files_by_kind, cfg, 4, steps_per_epoch=10,
                                  counts_by_kind=fold.num_train_by_kind)  # 40 draws: past one pass of each kind
    with pytest.raises(data.ShardsError, match="do not hold the records manifest.json counts"):
        with data.naming_a_corrupt_shard_of(fold.train_files):
            for _ in stream:
                pass


def test_the_baseline_refuses_shards_holding_fewer_slices_than_counted(tiny_shards, tmp_path):
    from trainer.baseline import run
    from trainer.data import discovery as data

    shards_copy = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards_copy)
    manifest = json.load(open(shards_copy / "manifest.json"))
    _cut_last_record(str(shards_copy / manifest["files"]["train_by_kind"]["1"]["tp"][0]))
    with pytest.raises(data.ShardsError, match="manifest.json counts"):
        run.run_baseline(str(shards_copy), str(tmp_path / "baseline"))


# ---- 6: a full disk is one error line, without temp files or a half manifest ----









