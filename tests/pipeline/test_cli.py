"""`python -m pipeline.shards` as a user runs it: one `error:` line for each mistake, before any work."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from core.errors import UserError
from pipeline import shards
from tests.helpers import common


def test_overwrite_refuses_foreign_dir(tiny_dataset, tmp_path):
    (tmp_path / "precious.txt").write_text("not shards")
    with pytest.raises(UserError, match="not written by pipeline.shards"):
        shards.run(["--data_dir", tiny_dataset, "--output_dir", str(tmp_path), "--overwrite"])
    assert (tmp_path / "precious.txt").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.shards", *args], capture_output=True, text=True,
                          cwd=common.REPO)


def _assert_user_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_cli_user_errors(tiny_dataset, tmp_path):
    _assert_user_error(_cli("--data_dir", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")),
                       "not a directory")
    d = tmp_path / "data"
    shutil.copytree(tiny_dataset, d)
    tp = pd.read_csv(d / "train_tp.csv").drop(columns=["t_max"])
    tp.to_csv(d / "train_tp.csv", index=False)
    _assert_user_error(_cli("--data_dir", str(d), "--output_dir", str(tmp_path / "o")), "t_max")
    _assert_user_error(_cli("--data_dir", str(d), "--output_dir", str(tmp_path / "o"), "--num_fold", "3"),
                       "--num_fold")
    assert not (tmp_path / "o").exists()


def test_dataflow_refuses_local_paths(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="gs://"):
        shards.run(["--data_dir", tiny_dataset, "--output_dir", str(tmp_path / "o"), "--runner", "DataflowRunner"])
    assert not (tmp_path / "o").exists()
