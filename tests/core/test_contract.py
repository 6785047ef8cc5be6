"""The shared contract's own pieces: the crop rule against brute force, the one config mechanism's flags and
checks, and the one filesystem layer on a local and a non-local path."""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from core import crop, fs, settings
from core.errors import UserError
from pipeline.config import ShardsConfig
from tests.helpers import ram_filesystem  # noqa: F401  (registers ram:// with Beam's FileSystems)
from trainer.recipe import config as config_lib


def _brute_force_range(n: int, window: int, start: float, end: float, min_overlap: float) -> tuple[int, int]:
    """Every legal start tried: the smallest and largest whose window keeps min_overlap of the clipped event."""
    start, end = min(max(start, 0.0), n), min(max(end, min(max(start, 0.0), n)), n)
    need = min_overlap * min(end - start, window)
    ok = [o for o in range(max(n - window, 0) + 1) if min(end, o + window) - max(start, o) >= need - 1e-9]
    return (min(ok), max(ok)) if ok else (0, 0)


def test_crop_range_is_every_start_that_keeps_the_overlap():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, window = int(rng.integers(50, 400)), int(rng.integers(10, 200))
        start = float(rng.uniform(-50, n + 20))
        end = start + float(rng.uniform(0, 150))
        overlap = float(rng.choice([0.25, 0.5, 1.0]))
        got = crop.crop_range(n, window, start, end, overlap)
        assert got == _brute_force_range(n, window, start, end, overlap), (n, window, start, end, overlap)


def test_centred_start_centres_and_clamps_like_the_slices():
    assert crop.centred_start(1000, 100, 400.0, 500.0) == 400  # centre 450 -> [400, 500)
    assert crop.centred_start(1000, 100, -30.0, 10.0) == 0  # clamped at the start
    assert crop.centred_start(1000, 100, 980.0, 2000.0) == 900  # clipped to the slice, clamped at the end
    assert crop.centred_start(60, 100, 10.0, 20.0) == 0  # a slice shorter than the window
    # The job's slices and the trainer's centred crops are one rule (slice_bounds, with times in samples).
    assert crop.centred_start(48000 * 60, 480000, 12.3 * 48000, 13.1 * 48000) == crop.slice_bounds(
        12.3, 13.1, 48000, 480000, 48000 * 60)[0]


def test_generated_flags_name_required_fields_and_check_types_and_limits():
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, ShardsConfig, "job")
    with pytest.raises(SystemExit):  # --data_dir and --output_dir are required: no default
        parser.parse_args(["--output_dir", "o"])
    args = parser.parse_args(["--data_dir", "d", "--output_dir", "o", "--no-overwrite", "--num_folds", "3"])
    assert settings.flag_overrides(args, ShardsConfig) == {"data_dir": "d", "output_dir": "o", "overwrite": False,
                                                            "num_folds": 3}
    cfg = config_lib.preset_config("tiny")
    with pytest.raises(settings.ConfigError, match=r"--mel\.n_fft=100000 is out of range"):  # MelConfig.LIMITS
        settings.apply_overrides(cfg, {"mel": {"n_fft": 100000}}, flags=True)
    with pytest.raises(settings.ConfigError, match=r"^augment\.noise_p must be of type float"):
        settings.apply_overrides(cfg, {"augment": {"noise_p": "high"}})
    with pytest.raises(UserError, match="num_folds must be of type int"):
        ShardsConfig("d", "o", num_folds=2.5)  # checked on construction too, not only from flags


def test_flatten_and_differences_use_the_flag_names():
    a = config_lib.preset_config("tiny")
    b = dataclasses.replace(a, epochs=a.epochs + 1, mel=dataclasses.replace(a.mel, n_mels=a.mel.n_mels * 2))
    assert settings.differences(a, b) == [f"mel.n_mels: {a.mel.n_mels} -> {b.mel.n_mels}",
                                          f"epochs: {a.epochs} -> {b.epochs}"]


@pytest.mark.parametrize("root_kind", ["local", "ram"])
def test_one_layer_lists_removes_and_creates_exclusively(tmp_path, root_kind):
    root = str(tmp_path / "root") if root_kind == "local" else f"ram://{tmp_path.name}/root"
    fs.write_text(fs.join(root, "a", "b", "c.txt"), "deep")  # parents made
    fs.write_bytes(fs.join(root, "top.bin"), b"\x00\x01")
    assert fs.listdir(root) == ["a", "top.bin"]  # direct entries only, not the nested file
    assert fs.isdir(fs.join(root, "a")) and not fs.isdir(fs.join(root, "top.bin"))
    assert fs.read_text(fs.join(root, "a", "b", "c.txt")) == "deep" and fs.size(fs.join(root, "top.bin")) == 2
    lock = fs.join(root, ".lock")
    assert fs.create_exclusive(lock, "first") and not fs.create_exclusive(lock, "second")
    assert fs.read_text(lock) == "first"
    fs.remove(fs.join(root, "a"))  # a whole tree
    assert fs.listdir(root) == [".lock", "top.bin"] and fs.missing([fs.join(root, "a", "b", "c.txt")])
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(fs.join(root, "nowhere.bin"))
    assert fs.real(root) == (root if root_kind == "ram" else str((tmp_path / "root").resolve()))
