"""The trainer's one filesystem layer and its layouts: readers and writers work on a non-local filesystem.

`ram://` is TensorFlow's in-memory filesystem, registered with Beam's FileSystems (core.fs's remote
backend) by tests.helpers.ram_filesystem: a path that is not a local one, which core.fs and TensorFlow
both reach (as gs:// is). Code that used pathlib, open() or os.path on it would fail or write into the
working directory. Also: fold example counts come from the manifest while the up-front check reads
only each file's first record; the column-name helpers; cv's flags are trainer.training.train's.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from core import fs
from core.errors import UserError
from tests.helpers import ram_filesystem  # noqa: F401  (registers ram:// with Beam's FileSystems)
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import RATE, small_config
from trainer.data import discovery, recordings
from trainer.evaluation import columns
from trainer.training import cv, report, runs
from trainer.training import run_layout as layout


def _copy_tree(src: str, dst: str) -> None:
    for directory, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(directory, src)
        target = dst if rel == "." else fs.join(dst, rel)
        fs.makedirs(target)
        for name in files:
            fs.copy(os.path.join(directory, name), fs.join(target, name))


def test_shards_are_read_from_a_non_local_filesystem(tiny_shards, tmp_path):
    remote = f"ram://{tmp_path.name}/shards"
    _copy_tree(tiny_shards, remote)
    local_manifest, manifest = discovery.read_manifest(tiny_shards), discovery.read_manifest(remote)
    assert manifest.train == local_manifest.train and manifest.num_classes == local_manifest.num_classes
    assert recordings.list_test_ids(remote, manifest) == recordings.list_test_ids(tiny_shards, local_manifest)
    cfg = small_config(mel={"sample_rate": manifest.sample_rate}, num_classes=manifest.num_classes)
    fold = discovery.prepare_fold(remote, 0, cfg)
    assert all(f.startswith(remote + "/train/") for f in fold.train_files + fold.val_files)
    assert fold.num_val == manifest.examples(0)


def _run_dir(root: str, fold: int, rng: np.random.Generator, complete: bool = True) -> str:
    """A run dir with what the CV report reads: config.json, history.csv, val_predictions.csv [, summary.json]."""
    run_dir = fs.join(root, f"fold{fold}")
    fs.write_json(layout.path(run_dir, layout.CONFIG), {})
    fs.write_csv(pd.DataFrame({"epoch": [0, 1], "val_rec_lwlrap": [0.4, 0.6]}), layout.path(run_dir, layout.HISTORY))
    labels = np.eye(3, dtype=np.int64)[[0, 1, 2, 0]]
    table = pd.DataFrame({"recording_id": [f"r{fold}{i}" for i in range(4)], "fold": fold})
    table[columns.label_columns(3)] = labels
    table[columns.score_columns(3)] = rng.random((4, 3))
    fs.write_csv(table, layout.path(run_dir, layout.VAL_PREDICTIONS))
    if complete:
        fs.write_json(layout.path(run_dir, layout.SUMMARY), {"best_epoch": 2})
    return run_dir


def test_run_discovery_and_cv_report_on_a_non_local_filesystem(tmp_path, caplog):
    root = f"ram://{tmp_path.name}/runs"
    rng = np.random.default_rng(0)
    dirs = {k: _run_dir(root, k, rng) for k in (0, 1)}
    _run_dir(root, 2, rng, complete=False)
    with caplog.at_level("WARNING", logger="trainer.training.runs"):
        assert runs.complete_runs_under(root) == [dirs[0], dirs[1]]
    assert "fold2" in caplog.text

    result = report.write_cv_report(dirs, fs.join(root, "cv"))
    oof = fs.read_csv(fs.join(root, "cv", report.OOF_FILE), dtype={"recording_id": str})
    assert len(oof) == result["num_examples"] == 8 and sorted(oof["fold"].unique()) == [0, 1]
    assert fs.read_json(fs.join(root, "cv", report.REPORT_FILE))["folds"]["0"]["best_epoch"] == 2
    for png in (report.PER_CLASS_PNG, report.CURVES_PNG):
        assert fs.read_bytes(fs.join(root, "cv", png)).startswith(b"\x89PNG")
    assert not os.path.exists("ram:") and not os.path.exists(os.path.join(os.getcwd(), tmp_path.name))


def test_counts_come_from_the_manifest_and_a_damaged_tail_is_named_when_read(tmp_path):
    shards = sf.write_shards(str(tmp_path / "shards"), sf.three_kind_folds(), sample_rate=RATE, slice_seconds=2.0)
    shard = os.path.join(shards, "train", "fold-1", "tp-00000-of-00001.tfrecord")
    assert discovery.count_records(shard) == 4
    with open(shard, "r+b") as f:  # the last record loses its end; the first stays whole
        f.truncate(os.path.getsize(shard) - 10)
    inputs = discovery.prepare_fold(shards, 0, small_config())  # reads each file's first record only
    assert (inputs.num_train, inputs.num_val) == (16, 6)
    assert inputs.num_train_by_kind == {"tp": 8, "fp": 4, "background": 4}
    message = discovery.find_corrupt_shard(inputs.val_files + inputs.train_files)
    assert message is not None and message.startswith(f"shard {shard} is corrupt")


def test_column_helpers():
    assert columns.score_columns(3) == ["s0", "s1", "s2"]
    assert columns.class_columns(2, columns.WEIGHT) == ["w0", "w1"]
    assert columns.find(["s10", "y0", "s2", "s", "sx", "recording_id", "s0"], columns.SCORE) == ["s0", "s2", "s10"]


def test_cv_takes_every_training_flag_and_refuses_the_single_run_ones():
    args, cfg = cv.parse_args(["--shards_dir", "s", "--folds", "0", "1", "--runs_root", "r", "--preset", "tiny",
                               "--mel.n_mels", "48", "--epochs", "3"])
    assert (args.folds, args.runs_root, cfg.mel.n_mels, cfg.epochs) == ([0, 1], "r", 48, 3)
    for flag in (["--fold", "1"], ["--run_dir", "x"], ["--overwrite"]):
        with pytest.raises(UserError, match=f"{flag[0]} is a flag of trainer.training.train"):
            cv.parse_args(["--shards_dir", "s", "--folds", "0", "--runs_root", "r", *flag])


def test_path_helpers_keep_roots_and_urls():
    assert fs.dirname("/x.csv") == "/" and fs.with_suffix("/x.csv", ".config.json") == "/x.config.json"
    assert fs.dirname("x.csv") == "" and fs.with_suffix("x.csv", ".score.json") == "x.score.json"
    assert fs.dirname("gs://b/runs/x.csv") == "gs://b/runs"
    assert fs.with_suffix("gs://b/runs/sub.csv", ".config.json") == "gs://b/runs/sub.config.json"
    assert fs.join("gs://b", "runs", "fold0") == "gs://b/runs/fold0"
