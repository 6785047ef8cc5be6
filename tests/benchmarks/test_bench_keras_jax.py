"""benchmarks/bench_keras_jax: the preset travels as JSON and builds the trainer's model from it; the timing
loop and the augmentation worker run (here on Keras' TensorFlow backend; on the GPU machine on JAX's).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from benchmarks import bench_keras_jax
from trainer.model import network
from trainer.recipe import config


def test_the_full_preset_travels_with_the_seeds_input_shape(tmp_path):
    path = str(tmp_path / "full.json")
    bench_keras_jax.write_config(path, "full")
    cfg = bench_keras_jax.load_config(path)
    assert cfg.input_shape == [128, 938, 1]  # 10 s at 48 kHz, hop 512, 128 mels: the seed's ResNet50 input
    assert (cfg.backbone, cfg.head, cfg.batch_size, cfg.from_preset) == ("resnet50", "gap", 32, "full")
    assert cfg.augment == dataclasses.asdict(config.preset_config("full").augment)


def test_time_model_trains_the_presets_own_network(tmp_path):
    path = str(tmp_path / "cpu.json")
    bench_keras_jax.write_config(path, "cpu")
    cfg = bench_keras_jax.load_config(path)
    row = bench_keras_jax.time_model(cfg, batch_size=2, precision="float32", windows=1, window_steps=2)
    n_mels = cfg.input_shape[0]
    expected = network.build_model(config.preset_config("cpu"), tuple(cfg.input_shape),
                                   (np.zeros(n_mels), np.ones(n_mels)))
    assert row["params"] == expected.count_params()
    assert row["examples_per_s"] == round(row["steps_per_s"] * 2, 1) > 0
    assert np.isfinite(row["final_loss"]) and len(row["window_s"]) == 1


def test_the_augmentation_worker_counts_windows_it_augmented():
    augment = dataclasses.asdict(config.preset_config("full").augment)
    assert bench_keras_jax._augment_worker(augment, 48000, 4800, seconds=0.05, seed=0) >= 1
