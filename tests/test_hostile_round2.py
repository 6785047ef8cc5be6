"""Hostile input, round 2 (issue 16): no command deletes what it did not write, resume and cv never mix
folds or shards, every bad file ends as a dead letter without a hang, clear errors.

Data: the session's tiny dataset and shards (tests/conftest.py) and copies of them; damaged files are
made here by plain file operations. No test trains a ResNet: the run-dir tests stop a real
trainer.train before its first step (StopAtTrainBegin) or drive trainer.train's own callbacks with a
one-layer model.
"""
from __future__ import annotations

import dataclasses
import errno
import io
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
import soundfile as sf

from pipeline import audio, demo_data, examples, labels, shards
from pipeline.config import ShardsConfig
from pipeline.errors import UserError
from tests.conftest import TINY_NUM_FOLDS, TINY_SLICE_SECONDS
from tests.recipe_config import recipe_config
from trainer import config as config_lib
from trainer import cv, predict, report, runs, train
from trainer import run_layout as layout

CFG = recipe_config({"batch_size": 4, "epochs": 2, "steps_per_epoch": 1, "verbose": 0})


def _shards_args(data_dir, out, *extra):
    return ["--data_dir", str(data_dir), "--output_dir", str(out), "--num_folds", str(TINY_NUM_FOLDS),
            "--slice_seconds", str(TINY_SLICE_SECONDS), "--runner", "DirectRunner", *extra]


def _snapshot(root) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def _fake_finished_run(run_dir, fold=0, shards_dir="elsewhere", shards_id="0123456789abcdef") -> str:
    """A run dir with the files trainer.train leaves (contents stand-ins, names and config real)."""
    run_dir = str(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    config_lib.save_config(CFG, os.path.join(run_dir, layout.CONFIG))
    with open(os.path.join(run_dir, layout.SUMMARY), "w") as f:
        json.dump({"fold": fold, "shards_dir": shards_dir, "shards_id": shards_id}, f)
    for name in (layout.BEST_MODEL, layout.HISTORY):
        with open(os.path.join(run_dir, name), "w") as f:
            f.write("trained for hours")
    return run_dir


class Stop(Exception):
    pass


class StopAtTrainBegin(keras.callbacks.Callback):
    """Ends trainer.train before its first step (everything before fit has run)."""

    def on_train_begin(self, logs=None):
        raise Stop()


# ---- 1, 2: pipeline.shards --overwrite removes only a shards job's output ----

def test_shards_refuse_a_training_run_dir_with_or_without_overwrite(tiny_dataset, tmp_path):
    run_dir = _fake_finished_run(tmp_path / "run")
    before = _snapshot(run_dir)
    for extra in ((), ("--overwrite",)):
        with pytest.raises(UserError) as e:
            shards.run(_shards_args(tiny_dataset, run_dir, *extra))
        assert "best.keras" in str(e.value) and "summary.json" in str(e.value)
        assert "pass --overwrite" not in str(e.value)  # the old advice led straight to the deletion
    assert _snapshot(run_dir) == before


def test_shards_overwrite_refuses_data_reached_through_a_symlink(tiny_dataset, tiny_shards, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_shards, out)  # a previous shards job's output ...
    shutil.copytree(tiny_dataset, out / "data")  # ... holding the dataset
    link = tmp_path / "link"
    link.symlink_to(out / "data")
    with pytest.raises(UserError, match="is inside it"):
        shards.run(_shards_args(link, out, "--overwrite"))
    assert _snapshot(out / "data") == _snapshot(tiny_dataset)


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


# ---- 5: one trainer.train per run dir ----

def test_a_second_train_into_a_run_dir_in_use_is_refused(tiny_shards, tmp_path):
    from trainer import run_guard

    run_dir = str(tmp_path / "run")
    with run_guard.locked(run_dir, tiny_shards, 0):  # the first run holds it
        with pytest.raises(UserError, match="in use by another run of trainer.train"):
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
    """Puts the monitored metric into each epoch's logs, first, as trainer.validation does."""

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
    """A one-layer model fitted with trainer.train's callbacks (backup, history, checkpoints)."""
    cfg = recipe_config({"epochs": epochs, "verbose": 0})
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    net.compile(optimizer="adam", loss="mse")
    callbacks = train._callbacks(run_dir, cfg, layout.read_history(run_dir).iloc[0:0], ValidatorStandIn())
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

def _flac_bytes(seconds: float, sample_rate: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, demo_data.background(int(seconds * sample_rate), np.random.default_rng(seed)), sample_rate,
             format="FLAC")
    return buf.getvalue()


def _task(rows, kind="tp", num_background=2):
    csv_rows = tuple(labels.CsvRow(kind, i, {"recording_id": "rec", "species_id": "3", "songtype_id": "1",
                                             "t_min": "1.0", "f_min": "500", "t_max": "1.5", "f_max": "900", **r})
                     for i, r in enumerate(rows))
    return examples.RecordingTask(examples.TRAIN, "rec", "train/rec.flac", 0, csv_rows, num_background)


SHARDS_CFG = ShardsConfig(data_dir="data", output_dir="out", slice_seconds=2.0, num_classes=24)


def test_a_songtype_id_out_of_range_rejects_only_its_row():
    rows = [{"t_min": str(t), "t_max": str(t + 0.5)} for t in (1.0, 3.0, 5.0, 7.0)]
    rows.insert(2, {"songtype_id": "99999999999999999999"})
    out = examples.process(_task(rows), lambda: _flac_bytes(12.0, 48000), SHARDS_CFG)
    assert [(r.row_index, r.reason) for r in out.rejections] == [(2, labels.SONGTYPE_OUT_OF_RANGE)]
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["tp"] * 4


@pytest.mark.parametrize("source_rate,f_min,f_max", [
    (48000, "25000", "26000"), (48000, "500", "1e12"), (8000, "1000", "5000"), (8000, "500", "4001"),
])
def test_a_box_above_nyquist_is_bad_frequency(source_rate, f_min, f_max):
    rows = [{}, {"f_min": f_min, "f_max": f_max, "t_min": "3.0", "t_max": "3.5"}]
    out = examples.process(_task(rows), lambda: _flac_bytes(8.0, source_rate), SHARDS_CFG)
    assert [(r.row_index, r.reason) for r in out.rejections] == [(1, labels.BAD_FREQUENCY)]
    assert "Nyquist" in out.rejections[0].detail
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["tp"]
    at_nyquist = [{"f_min": "500", "f_max": str(min(source_rate, 48000) // 2)}]  # still inside the band
    assert not examples.process(_task(at_nyquist), lambda: _flac_bytes(8.0, source_rate), SHARDS_CFG).rejections


# ---- 14: sample_submission.csv is checked before the job launches ----

@pytest.mark.parametrize("damage", ["duplicate_id", "only_recording_id", "26_columns"])
def test_a_bad_sample_submission_stops_the_job_before_launch(tiny_dataset, tmp_path, damage):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train_tp.csv", "train_fp.csv"):
        shutil.copy(os.path.join(tiny_dataset, name), data / name)
    sample = pd.read_csv(os.path.join(tiny_dataset, "sample_submission.csv"), dtype=str)
    if damage == "duplicate_id":
        sample = pd.concat([sample, sample.iloc[:1]])
    elif damage == "only_recording_id":
        sample = sample[["recording_id"]]
    else:
        sample = sample.assign(s24="0", s25="0")
    sample.to_csv(data / "sample_submission.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="sample_submission.csv"):
        shards.run(_shards_args(data, out))
    assert not out.exists()  # stopped before anything was written


# ---- 9: a FLAC with an ID3v1 trailer is good audio ----

def test_a_flac_with_an_id3v1_trailer_is_decoded_whole():
    good = _flac_bytes(8.0, 48000, seed=3)
    tagged = good + b"TAG" + b"title".ljust(30, b"\0") + bytes(95)  # the 128-byte ID3v1 layout
    want, _ = sf.read(io.BytesIO(good), dtype="int16")
    assert sf.info(io.BytesIO(tagged)).frames == len(want)  # plain soundfile reads every frame
    np.testing.assert_array_equal(audio.decode_pcm16(tagged, 48000).samples, want)
    task = _task([{}, {"t_min": "3.0", "t_max": "3.5"}, {"t_min": "5.0", "t_max": "5.5"}])
    task = dataclasses.replace(task, rows=task.rows[:2] + (labels.CsvRow("fp", 0, {**task.rows[2].raw}),))
    out = examples.process(task, lambda: tagged, SHARDS_CFG)
    assert out.rejections == [] and out.file_error is None
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["fp"] + ["tp"] * 2


# ---- 10, 11: only regular files inside the data dir are read, within a size bound, without a hang ----

def test_fifo_dev_zero_huge_and_outside_files_are_dead_letters_without_a_hang(tiny_dataset, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(tiny_dataset, data)
    train_ids = sorted(f[:-5] for f in os.listdir(data / "train"))
    test_ids = sorted(f[:-5] for f in os.listdir(data / "test"))
    (data / "train" / f"{train_ids[0]}.flac").unlink()
    (data / "train" / f"{train_ids[0]}.flac").symlink_to("/dev/zero")
    outside = tmp_path / "elsewhere.flac"
    shutil.move(data / "train" / f"{train_ids[1]}.flac", outside)  # good audio, but outside the data dir
    (data / "train" / f"{train_ids[1]}.flac").symlink_to(outside)
    with open(data / "train" / f"{train_ids[2]}.flac", "r+b") as f:
        f.truncate(1 << 30)  # 1 GiB (sparse): more than 600 s of any audio the job reads
    (data / "test" / f"{test_ids[0]}.flac").unlink()
    os.mkfifo(data / "test" / f"{test_ids[0]}.flac")  # nobody ever writes into it
    job = subprocess.run([sys.executable, "-m", "pipeline.shards", *_shards_args(data, out)], capture_output=True,
                         text=True, timeout=240, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert job.returncode == 0, job.stderr[-3000:]
    letters = [json.loads(line) for p in sorted((out / "rejected").glob("*.jsonl")) for line in open(p)]
    reasons = {}
    for r in letters:
        reasons.setdefault(r["recording_id"], set()).add((r["kind"], r["reason"]))
    assert reasons[train_ids[0]] and {reason for _, reason in reasons[train_ids[0]]} == {"not_a_file"}
    assert {reason for _, reason in reasons[train_ids[1]]} == {"outside_data_dir"}
    assert {reason for _, reason in reasons[train_ids[2]]} == {"too_large"}
    assert reasons[test_ids[0]] == {("test", "not_a_file")}
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["counts"]["test_examples"] == len(test_ids) - 1


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
    from tests import shard_factory
    from tests.recipe_config import small_config
    from trainer import data, inputs

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
    from trainer import baseline, data

    shards_copy = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards_copy)
    manifest = json.load(open(shards_copy / "manifest.json"))
    _cut_last_record(str(shards_copy / manifest["files"]["train_by_kind"]["1"]["tp"][0]))
    with pytest.raises(data.ShardsError, match="manifest.json counts"):
        baseline.run_baseline(str(shards_copy), str(tmp_path / "baseline"))


# ---- 6: a full disk is one error line, without temp files or a half manifest ----

class _FullDisk:
    """A file handle on a disk that is full: the file exists, no byte can be written into it."""

    def __init__(self, real):
        self._real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self._real.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("fills_at", ["manifest", "train shards"])
def test_a_full_disk_is_one_error_line_and_leaves_no_temp_files(tiny_dataset, tmp_path, monkeypatch, fills_at):
    from apache_beam.io.filesystems import FileSystems

    real_create = FileSystems.create

    def create(path, *args, **kwargs):
        handle = real_create(path, *args, **kwargs)
        name = os.path.basename(path)
        full = name.startswith("manifest.json") if fills_at == "manifest" else "beam-temp-" in path
        return _FullDisk(handle) if full else handle

    monkeypatch.setattr(FileSystems, "create", create)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no space left on the file system mounted at /"):
        shards.run(_shards_args(tiny_dataset, out))
    left = [os.path.relpath(os.path.join(d, n), out) for d, dirs, names in os.walk(out) for n in names + dirs]
    assert "manifest.json" not in left  # no manifest: nothing takes the output for finished
    assert not [p for p in left if "beam-temp" in p or p.endswith(".writing")], left


def test_shards_refuse_an_output_dir_inside_a_run_dir_or_another_shards_dir(tiny_dataset, tiny_shards, tmp_path):
    run_dir = _fake_finished_run(tmp_path / "run")
    for parent in (run_dir, tiny_shards):
        before = _snapshot(parent)
        with pytest.raises(UserError, match="is inside the (run|shards) dir"):
            shards.run(_shards_args(tiny_dataset, os.path.join(parent, "new_shards")))
        assert _snapshot(parent) == before


def test_the_pipeline_names_the_trainer_s_files_as_the_trainer_does():
    """pipeline.owned cannot import the trainer (its workers never import TensorFlow), nor trainer.dir_guard
    the Beam side: their copies of each other's names must stay the same."""
    from pipeline import owned
    from trainer import dir_guard, run_guard

    run_names = {layout.SUMMARY, layout.BEST_MODEL, layout.HISTORY, layout.BACKUP, layout.CHECKPOINTS}
    assert run_names <= owned.OTHER_COMMANDS_NAMES
    assert set(owned.RUN_DIR_NAMES) == set(dir_guard.RUN_DIR_NAMES) <= run_names
    assert owned.RUN_IDENTITY == run_guard.IDENTITY_FILE
    assert owned.SHARDS_CONFIG_KEYS == dir_guard.SHARDS_CONFIG_KEYS <= set(dataclasses.asdict(SHARDS_CFG))


def test_common_names_alone_mark_no_run_or_shards_dir(tmp_path):
    """A home dir with a backup/ dir, a manifest.json or a history.csv of its own is no run or shards dir."""
    from trainer import dir_guard

    for name in ("backup", "checkpoints"):
        (tmp_path / name).mkdir()
    for name in ("manifest.json", "history.csv", "folds.csv"):
        (tmp_path / name).write_text("{}" if name.endswith(".json") else "a,b\n")
    dir_guard.refuse_inside("--output", str(tmp_path / "sub" / "submission.csv"), is_dir=False)
    dir_guard.refuse_inside("--run_dir", str(tmp_path / "run"), own=dir_guard.RUN)
