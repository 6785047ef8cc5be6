"""Trainer configs for tests: small shapes and every recipe setting explicit.

The recipe's defaults (augmentation, scaling, unlabelled weight, sampling, schedule, preset sizes)
are tuned by measurement and may change; a test must not depend on them. `small_config` starts
from the `tiny` preset, then sets the sizes of 1 s windows of 16 kHz audio (log-mel 32 x 63) and
every recipe field explicitly (augmentation off), then the test's own overrides. `recipe_config`
keeps a preset's sizes (e.g. tiny's 2 s windows of 48 kHz audio, for the demo shards).

    cfg = small_config(negative_fraction=0.5, augment={"enabled": True, "mixup_p": 1.0})
    cfg = recipe_config({"batch_size": 4, "epochs": 1})              # tiny preset sizes
    json.dumps(as_config_file_content(cfg))   # a `--config` file for trainer.training.train / trainer.training.cv
"""
from __future__ import annotations

from typing import Any

from trainer.recipe import config

RATE = 16000
WINDOW_SECONDS = 1.0
N_MELS = 32
HOP = 256
FRAMES = 1 + int(RATE * WINDOW_SECONDS) // HOP  # librosa's centred STFT: 63

SIZES: dict[str, Any] = {
    "window_seconds": WINDOW_SECONDS, "batch_size": 4, "epochs": 2, "steps_per_epoch": 3, "dense_units": 16,
    "mel": {"sample_rate": RATE, "n_fft": 512, "hop_length": HOP, "n_mels": N_MELS, "fmin": 84.0,
            "fmax": 8000.0, "power": 2.0, "top_db": 80.0, "amin": 1e-10, "scaling": "minmax"},
}
RECIPE: dict[str, Any] = {
    "loss": "sigmoid", "negative_fraction": 0.25, "unlabelled_weight": 0.0, "min_box_overlap": 0.5,
    "freq_channel": False, "band_norm": False, "floor_channel": False, "class_balance": 0.0,
    "monitor": "val_rec_lwlrap", "optimizer": "adam",
    "learning_rate": 1e-3, "lr_schedule": "constant", "warmup_epochs": 0.0, "ema_momentum": 0.0, "bn_momentum": 0.9,
    "dropout": 0.3, "patience": 0, "shuffle_buffer": 16, "seed": 0, "deterministic": True, "mixed_precision": False,
    "strategy": "default", "verbose": 0,
}
AUGMENT_OFF: dict[str, Any] = {
    "enabled": False, "noise_p": 0.0, "pitch_shift_p": 0.0, "time_shift_p": 0.0, "volume_p": 0.0,
    "time_masks": 0, "freq_masks": 0, "mixup_p": 0.0,
}


def recipe_config(*layers: dict[str, Any], preset: str = "tiny") -> config.TrainConfig:
    """The preset < RECIPE (augmentation off) < each of `layers` in turn (nested sections as dicts)."""
    cfg = config.preset_config(preset)
    for layer in (RECIPE, {"augment": AUGMENT_OFF}, *layers):
        cfg = config.apply_overrides(cfg, layer)
    return cfg


def small_config(**overrides: Any) -> config.TrainConfig:
    """tiny preset < RECIPE (augmentation off) < SIZES (1 s of 16 kHz, 32 x 63) < overrides."""
    return recipe_config(SIZES, overrides)


def as_config_file_content(cfg: config.TrainConfig) -> dict[str, Any]:
    """Every setting of `cfg` except the preset it started from (so `--preset` still decides that)."""
    values = config.config_to_dict(cfg)
    values.pop("from_preset")
    return values
