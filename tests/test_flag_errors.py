"""Every user mistake on the command line ends in one `error:` line and exit status 2, before any work.

Each entry point's main runs in-process under errors.run_main, as `python -m ...` runs it; a
traceback would escape as an exception and fail the test.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from core import settings
from core.errors import run_main
from pipeline import demo_data, shards
from trainer.inference import predict
from trainer.recipe import config as config_lib
from trainer.training import cv, train


def _error_line(capsys, main, argv) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@contextlib.contextmanager
def _read_only(path):
    """`path` made unwritable, for root too (chattr +i; skipped where that is not possible)."""
    os.chmod(path, 0o555)
    immutable = os.access(path, os.W_OK)  # root ignores the mode bits, not the immutable flag
    if immutable and not (shutil.which("chattr") and
                          subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0):
        os.chmod(path, 0o755)
        pytest.skip("cannot make a directory read-only for this user")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        os.chmod(path, 0o755)


# ---- pipeline.shards ----

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("flag_data"))
    demo_data.write_demo_dataset(d, num_train=3, num_test=1, duration_s=2.0, seed=4)
    return d


def _shards(data: str, out: str, *extra: str) -> list[str]:
    return ["--data_dir", data, "--output_dir", out, "--num_folds", "2", *extra]


@pytest.mark.parametrize("flag,value,needle", [
    ("--fold_seed", "-1", "--fold_seed must be >= 0"),
    ("--fold_seed", str(2**32), "--fold_seed must be <="),
    ("--slice_seconds", "nan", "finite"), ("--slice_seconds", "inf", "finite"),
    ("--slice_seconds", "-1", "--slice_seconds must be >"),
    ("--max_shard_mb", "inf", "finite"), ("--max_shard_mb", "nan", "finite"),
    ("--max_recording_seconds", "0", "--max_recording_seconds must be >"),
    ("--max_recording_seconds", "nan", "finite"),
    ("--num_classes", str(10**9), "--num_classes must be <="), ("--sample_rate", str(10**9), "--sample_rate"),
    ("--num_folds", "x", "invalid int value"),
])
def test_shards_number_flags(capsys, data_dir, tmp_path, flag, value, needle):
    line = _error_line(capsys, shards.main, _shards(data_dir, str(tmp_path / "o"), flag, value))
    assert needle in line
    assert not (tmp_path / "o").exists()


def test_shards_output_dir_is_a_file(capsys, data_dir, tmp_path):
    (tmp_path / "o").write_text("not a dir")
    assert "is a file, not a directory" in _error_line(capsys, shards.main, _shards(data_dir, str(tmp_path / "o")))
    (tmp_path / "p").write_text("not a dir")
    line = _error_line(capsys, shards.main, _shards(data_dir, str(tmp_path / "p" / "o")))
    assert "is a file, not a directory" in line


def test_shards_output_dir_read_only(capsys, data_dir, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    with _read_only(parent):
        line = _error_line(capsys, shards.main, _shards(data_dir, str(parent / "o")))
    assert "not writable" in line and not (parent / "o").exists()


def test_shards_csv_is_a_directory(capsys, data_dir, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(data_dir, d)
    os.remove(d / "train_tp.csv")
    (d / "train_tp.csv").mkdir()
    assert "is a directory" in _error_line(capsys, shards.main, _shards(str(d), str(tmp_path / "o")))
    (d / "train_tp.csv").rmdir()
    shutil.copy(os.path.join(data_dir, "train_tp.csv"), d / "train_tp.csv")
    (d / "sample_submission.csv").write_text("id,s0\nx,0\n")
    assert "no recording_id column" in _error_line(capsys, shards.main, _shards(str(d), str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_demo_data_flags(capsys, tmp_path):
    assert "finite" in _error_line(capsys, demo_data.main, [str(tmp_path / "d"), "--duration", "nan"])
    assert "--seed must be >= 0" in _error_line(capsys, demo_data.main, [str(tmp_path / "d"), "--seed", "-1"])
    assert not (tmp_path / "d").exists()


# ---- trainer ----

def _float_flags() -> list[str]:
    return [name for name, tp, _, _ in settings.leaf_fields(config_lib.TrainConfig) if tp is float]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_training_flag_refuses_non_finite(capsys, tmp_path, value):
    flags = _float_flags()
    assert len(flags) > 15  # window_seconds, learning_rate, mel.*, augment.* ...
    for name in flags:
        argv = ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"), f"--{name}={value}"]
        line = _error_line(capsys, train.main, argv)
        assert name in line and "finite" in line


def test_non_finite_in_a_config_file(capsys, tmp_path):
    (tmp_path / "c.json").write_text('{"learning_rate": NaN}')  # Python's json reads NaN
    argv = ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"),
            "--config", str(tmp_path / "c.json")]
    assert "learning_rate must be a finite number" in _error_line(capsys, train.main, argv)


@pytest.mark.parametrize("flag,value,needle", [
    ("--seed", "-1", "seed=-1"), ("--seed", str(2**32), "seed="), ("--fold", "x", "invalid int value"),
])
def test_training_int_flags(capsys, tmp_path, flag, value, needle):
    argv = ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"), flag, value]
    assert needle in _error_line(capsys, train.main, argv)


def test_run_dir_is_a_file(capsys, tiny_shards, tmp_path):
    (tmp_path / "run").write_text("a file")
    argv = ["--shards_dir", tiny_shards, "--fold", "0", "--run_dir", str(tmp_path / "run"), "--preset", "tiny"]
    assert "is a file, not a directory" in _error_line(capsys, train.main, argv)


def test_run_dir_read_only(capsys, tiny_shards, tmp_path):
    (tmp_path / "runs").mkdir()
    with _read_only(tmp_path / "runs"):
        argv = ["--shards_dir", tiny_shards, "--fold", "0", "--run_dir", str(tmp_path / "runs" / "f0"),
                "--preset", "tiny"]
        assert "not writable" in _error_line(capsys, train.main, argv)


def test_cv_fold_dir_is_a_file(capsys, tiny_shards, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "fold1").write_text("a file")
    argv = ["--shards_dir", tiny_shards, "--folds", "0", "1", "--runs_root", str(root), "--preset", "tiny"]
    line = _error_line(capsys, cv.main, argv)
    assert "fold1 is a file" in line
    assert sorted(os.listdir(root)) == ["fold1"]  # fold 0 was not trained first
    (tmp_path / "file_root").write_text("a file")
    argv[argv.index(str(root))] = str(tmp_path / "file_root")
    assert "is a file" in _error_line(capsys, cv.main, argv)


@pytest.mark.parametrize("stride", ["nan", "inf", "-1", "0"])
def test_predict_stride(capsys, tmp_path, stride):
    argv = ["--run_dir", str(tmp_path), "--shards_dir", str(tmp_path), "--output", str(tmp_path / "s.csv"),
            "--stride_seconds", stride]
    assert "--stride_seconds must be" in _error_line(capsys, predict.main, argv)


def test_predict_output_checked_before_any_inference(capsys, tmp_path):
    (tmp_path / "sub.csv").mkdir()
    # The run and shards dirs do not even exist: the output is checked before anything is read.
    argv = ["--run_dir", str(tmp_path / "no_run"), "--shards_dir", str(tmp_path / "no_shards"),
            "--output", str(tmp_path / "sub.csv")]
    assert "--output" in _error_line(capsys, predict.main, argv)
    (tmp_path / "sub.score.json").mkdir()
    argv[-1] = str(tmp_path / "sub2.csv")
    (tmp_path / "sub2.score.json").mkdir()
    assert "sub2.score.json is a directory" in _error_line(capsys, predict.main, argv)
    (tmp_path / "parent").write_text("a file")
    argv[-1] = str(tmp_path / "parent" / "sub.csv")
    assert "is a file, not a directory" in _error_line(capsys, predict.main, argv)


@pytest.mark.parametrize("flag,value", [
    ("--epochs", str(10**21)), ("--shuffle_buffer", str(10**12)), ("--dense_units", str(10**9)),
    ("--mel.n_fft", str(10**9)), ("--mel.n_mels", "100000"), ("--augment.noise_bank_seconds", "1e12"),
    ("--augment.noise_min_snr_db", "-1e9"), ("--learning_rate", "1e300"),
])
def test_training_sizes_out_of_range(capsys, tmp_path, flag, value):
    # Each of these crashed (int64 overflow, exhausted memory, segfault, division by zero) or hung.
    argv = ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"), f"{flag}={value}"]
    assert flag.lstrip("-") in _error_line(capsys, train.main, argv)


def test_more_mel_bands_than_fft_bins(capsys, tmp_path):
    argv = ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"), "--mel.n_fft", "128",
            "--mel.n_mels", "128"]
    assert "n_mels=128 exceeds the 65 FFT bins" in _error_line(capsys, train.main, argv)


def test_baseline_flags(capsys, tmp_path):
    from trainer.baseline import run

    (tmp_path / "out").write_text("a file")
    base = ["--shards_dir", str(tmp_path), "--out_dir", str(tmp_path / "out")]
    assert "is a file, not a directory" in _error_line(capsys, run.main, base)
    assert "mel.n_fft=1000000000 is out of range (must be <= 65536)" in _error_line(capsys, run.main, base + ["--mel.n_fft", str(10**9)])
    assert "finite" in _error_line(capsys, run.main, base + ["--c", "nan"])
    # --mel.device places the trainer's log-mel; the baseline trains no network, and an unknown place is named.
    assert "--mel.device is not a baseline setting" in _error_line(capsys, run.main, base + ["--mel.device", "model"])
    assert "invalid choice: 'gpu'" in _error_line(
        capsys, train.main, ["--shards_dir", str(tmp_path), "--fold", "0", "--run_dir", str(tmp_path / "r"),
                             "--mel.device", "gpu"])
