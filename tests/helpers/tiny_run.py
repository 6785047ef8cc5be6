"""A finished tiny-preset run dir made without the training pipeline (training a ResNet50 costs minutes here).

The model is trainer.model.network's real one with its random initial weights; its band_norm statistics
and every BatchNormalization's are set, as training would, from the log-mel (trainer.features.mel) of
generated noise at levels from -60 to -10 dBFS (one forward pass, momentum 0 for that pass). With the
initial statistics (mean 0, variance 1) the activations blow up through the 50 layers and every score
is 0 or 1, which would make equality tests meaningless.

    run_dir = make_tiny_run(tmp_path / "run", mixed_precision=True, seed=1)   # best.keras, config.json, summary.json
"""
from __future__ import annotations

import json
import os

import numpy as np

from trainer.data import discovery
from trainer.features import mel
from trainer.recipe import config as config_lib


def tiny_config(mixed_precision: bool = False, **overrides) -> config_lib.TrainConfig:
    return config_lib.apply_overrides(config_lib.preset_config("tiny"),
                                      {"verbose": 0, "mixed_precision": mixed_precision, **overrides})


def make_tiny_run(run_dir, mixed_precision: bool = False, seed: int = 0, **overrides) -> str:
    """Writes best.keras (calibrated as above), config.json and summary.json into run_dir; returns it."""
    import keras

    from trainer.model.network import build_model, iter_layers

    cfg = tiny_config(mixed_precision, seed=seed, **overrides)
    shape = discovery.input_shape(cfg)  # (n_mels, frames, 1)
    rng = np.random.default_rng(seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed_precision else "float32")
    try:
        keras.utils.set_random_seed(seed)
        samples = discovery.window_samples(cfg)
        levels = 10 ** (rng.uniform(-60, -10, (16, 1)) / 20)  # amplitude per example
        noise = np.cumsum(rng.standard_normal((16, samples)), axis=1) * 0.02 + rng.standard_normal((16, samples))
        features = mel.log_mel((noise / noise.std(axis=1, keepdims=True) * levels).astype(np.float32),
                               cfg.mel).numpy()[..., np.newaxis]  # [16, n_mels, frames, 1]
        band_stats = (features.mean(axis=(0, 2, 3)), features.var(axis=(0, 2, 3)))  # [n_mels] each
        net = build_model(cfg, shape, band_stats=band_stats)
        norms = [layer for layer in iter_layers(net) if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in norms:
            layer.momentum = 0.0  # the moving statistics become this batch's
        net(features, training=True)
        for layer in norms:
            layer.momentum = cfg.bn_momentum
        os.makedirs(run_dir, exist_ok=True)
        net.save(os.path.join(str(run_dir), "best.keras"))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    config_lib.save_config(cfg, os.path.join(str(run_dir), "config.json"))
    with open(os.path.join(str(run_dir), "summary.json"), "w") as f:
        json.dump({"note": "built by tests.helpers.tiny_run, fitted on random inputs"}, f)
    return str(run_dir)
