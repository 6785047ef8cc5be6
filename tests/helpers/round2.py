"""Shared by the round-2 hostile-input tests (tests/pipeline/, tests/trainer/training/, tests/core/):
a stand-in for a finished training run, file snapshots, the shards job's flags and the configs used."""
from __future__ import annotations

import json
import os

from pipeline.config import ShardsConfig
from tests.conftest import TINY_NUM_FOLDS, TINY_SLICE_SECONDS
from tests.helpers.recipe_config import recipe_config
from trainer.recipe import config as config_lib
from trainer.training import run_layout as layout

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
    """A run dir with the files trainer.training.train leaves (contents stand-ins, names and config real)."""
    run_dir = str(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    config_lib.save_config(CFG, os.path.join(run_dir, layout.CONFIG))
    with open(os.path.join(run_dir, layout.SUMMARY), "w") as f:
        json.dump({"fold": fold, "shards_dir": shards_dir, "shards_id": shards_id}, f)
    for name in (layout.BEST_MODEL, layout.HISTORY):
        with open(os.path.join(run_dir, name), "w") as f:
            f.write("trained for hours")
    return run_dir


SHARDS_CFG = ShardsConfig(data_dir="data", output_dir="out", slice_seconds=2.0, num_classes=24)
