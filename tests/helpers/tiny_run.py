"""A finished tiny-preset run dir made without the training pipeline: the real model of trainer.model.network,
fitted for a few steps on random log-mel inputs so its weights and BatchNormalization statistics have moved
away from their initial values (an untrained model's scores hardly differ between inputs).

    run_dir = make_tiny_run(tmp_path / "run", mixed_precision=True, seed=1)   # best.keras, config.json, summary.json
"""
from __future__ import annotations

import json
import os

import numpy as np

from trainer.data import discovery
from trainer.recipe import config as config_lib


def tiny_config(mixed_precision: bool = False, **overrides) -> config_lib.TrainConfig:
    return config_lib.apply_overrides(config_lib.preset_config("tiny"),
                                      {"verbose": 0, "mixed_precision": mixed_precision, **overrides})


def make_tiny_run(run_dir, mixed_precision: bool = False, seed: int = 0, steps: int = 3, **overrides) -> str:
    """Writes best.keras (fitted `steps` steps), config.json and summary.json into run_dir; returns it."""
    import keras

    from trainer.model.network import build_model

    cfg = tiny_config(mixed_precision, seed=seed, **overrides)
    shape = discovery.input_shape(cfg)  # (n_mels, frames, 1)
    rng = np.random.default_rng(seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed_precision else "float32")
    try:
        keras.utils.set_random_seed(seed)
        band_stats = (rng.normal(-60, 5, shape[0]), rng.uniform(50, 150, shape[0]))  # dB-like per-band stats
        net = build_model(cfg, shape, band_stats=band_stats)
        net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        batch = 8
        x = rng.normal(-60, 10, (steps * batch, *shape)).astype(np.float32)
        y = (rng.random((steps * batch, cfg.num_classes)) < 0.2).astype(np.float32)
        net.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        os.makedirs(run_dir, exist_ok=True)
        net.save(os.path.join(str(run_dir), "best.keras"))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    config_lib.save_config(cfg, os.path.join(str(run_dir), "config.json"))
    with open(os.path.join(str(run_dir), "summary.json"), "w") as f:
        json.dump({"note": "built by tests.helpers.tiny_run, fitted on random inputs"}, f)
    return str(run_dir)
