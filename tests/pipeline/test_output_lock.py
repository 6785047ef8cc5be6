"""One job per output dir (core.outlock): two runs into one OUT, live and stale locks."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from core import outlock
from core.errors import UserError
from pipeline import (
    shards,
)
from tests.pipeline.conftest import small_job_args as _args

SR = 48000
NUM_CLASSES = 24
MAX_36_BITS = 2**36 - 1


def test_two_runs_into_one_dir_exactly_one_succeeds(small_dataset, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    second: list[BaseException] = []
    real_preamble = shards.write_preamble

    def preamble_then_second_run(cfg, inputs):
        # Deterministic overlap: the second run starts while the first one holds the dir.
        try:
            shards.run(_args(small_dataset, out, "--overwrite"))
        except UserError as e:
            second.append(e)
        real_preamble(cfg, inputs)

    monkeypatch.setattr(shards, "write_preamble", preamble_then_second_run)
    shards.run(_args(small_dataset, out))
    assert len(second) == 1 and "in use by another run" in str(second[0])
    assert f"pid {os.getpid()}" in str(second[0]) and outlock.LOCK_NAME in str(second[0])
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["config"]["overwrite"] is False  # the survivor's config is the first run's own
    assert not os.path.exists(os.path.join(out, outlock.LOCK_NAME))


def test_live_lock_is_never_broken(small_dataset, tmp_path):
    out = str(tmp_path / "out")
    with outlock.held(out, overwrite=False):
        for extra in ((), ("--overwrite",)):
            with pytest.raises(UserError, match="in use by another run"):
                shards.run(_args(small_dataset, out, *extra))
        assert os.listdir(out) == [outlock.LOCK_NAME]  # the refused runs wrote nothing
    assert not os.path.exists(out)  # the lock made the dir; releasing it removed it, empty
    shards.run(_args(small_dataset, out))
    assert os.path.exists(os.path.join(out, "manifest.json"))


def test_stale_lock_of_a_killed_run_is_replaced_only_with_overwrite(small_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / outlock.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout),
                                                     "started": "earlier", "command": "killed", "token": "t"}))
    with pytest.raises(UserError, match="no longer running"):
        shards.run(_args(small_dataset, str(out)))
    shards.run(_args(small_dataset, str(out), "--overwrite"))
    assert (out / "manifest.json").exists() and not (out / outlock.LOCK_NAME).exists()
