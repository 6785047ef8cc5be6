"""Tests of trainer.mel against librosa (computed here, independently of the module's own reference).

Short audio (0.5 s) except for the one full-size shape check.
"""
from __future__ import annotations

import dataclasses

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from trainer.mel import LogMel, MelConfig, MelConfigError, librosa_log_mel, log_mel, mel_power, num_frames, power_to_db

CFG = MelConfig()
SR = CFG.sample_rate
N = SR // 2


def _librosa_db(y: np.ndarray, top_db: float = 80.0, amin: float = 1e-10) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128, fmin=84.0, fmax=15056.0, power=2.0
    )
    return librosa.power_to_db(power, ref=1.0, amin=amin, top_db=top_db)


def _min_max(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


SIGNALS = {
    "noise": (0.1 * np.random.default_rng(0).standard_normal(N)).astype(np.float32),
    "sine": (0.3 * np.sin(2 * np.pi * 1234.5 * np.arange(N) / SR)).astype(np.float32),
    "chirp": librosa.chirp(fmin=100, fmax=20000, sr=SR, length=N).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_log_mel_equals_librosa(name) -> None:
    y = SIGNALS[name]
    expected_db = _librosa_db(y)
    db = power_to_db(mel_power(y[None], CFG), CFG).numpy()[0]
    np.testing.assert_allclose(db, expected_db, atol=5e-3)  # dB; float32 FFT rounding ~80 dB below the peak
    np.testing.assert_allclose(log_mel(y[None], CFG).numpy()[0], _min_max(expected_db), atol=5e-5)
    np.testing.assert_allclose(librosa_log_mel(y, CFG), _min_max(expected_db), atol=1e-6)


def test_batch_is_scaled_per_example_and_silence_gives_zeros() -> None:
    batch = np.stack([SIGNALS["noise"], np.zeros(N, np.float32), SIGNALS["sine"], np.full(N, 0.25, np.float32)])
    out = log_mel(batch, CFG).numpy()  # [4, n_mels, frames]
    assert out.shape == (4, 128, num_frames(N, CFG)) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], _min_max(_librosa_db(batch[0])), atol=5e-5)
    np.testing.assert_allclose(out[2], _min_max(_librosa_db(batch[2])), atol=5e-5)
    assert not out[1].any()  # constant dB after the floor: zeros, not NaN
    np.testing.assert_allclose(out[3], _min_max(_librosa_db(batch[3])), atol=5e-5)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_seed_equivalent_config_reproduces_amplitude_to_db() -> None:
    """The module docstring's claim: the seed's amplitude_to_db(power) after min-max = top_db 40, amin 1e-5."""
    y = SIGNALS["chirp"] * np.linspace(1e-3, 1.0, N, dtype=np.float32)  # a wide dynamic range
    power = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, fmin=84.0, fmax=15056.0, power=2)
    seed_features = _min_max(librosa.amplitude_to_db(np.abs(power)))
    seed_cfg = dataclasses.replace(CFG, top_db=40.0, amin=1e-5)
    np.testing.assert_allclose(log_mel(y[None], seed_cfg).numpy()[0], seed_features, atol=5e-5)
    assert not np.allclose(log_mel(y[None], CFG).numpy()[0], seed_features, atol=1e-2)  # the default differs


def test_ten_seconds_give_128_by_938() -> None:
    ten_s = np.zeros(10 * SR, np.float32)
    expected_frames = librosa.feature.melspectrogram(y=ten_s[: 10 * SR], sr=SR, n_fft=2048, hop_length=512).shape[1]
    assert num_frames(10 * SR, CFG) == expected_frames == 938
    assert tuple(log_mel(ten_s[None], CFG).shape) == (1, 128, 938)


def test_log_mel_layer_saves_and_loads(tmp_path) -> None:
    cfg = dataclasses.replace(CFG, n_mels=64, top_db=60.0)
    inputs = keras.Input((N,))
    features = LogMel(cfg)(inputs)
    assert tuple(features.shape) == (None, 64, num_frames(N, cfg), 1)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(features)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.stack([SIGNALS["noise"], SIGNALS["chirp"]])
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert [layer.mel_config for layer in loaded.layers if isinstance(layer, LogMel)] == [cfg]


def test_log_mel_layer_stays_float32_under_mixed_precision() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = LogMel(CFG)
        out = layer(tf.constant(SIGNALS["sine"][None]))
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy()[0, ..., 0], _min_max(_librosa_db(SIGNALS["sine"])), atol=5e-5)


@pytest.mark.parametrize(
    "bad", [{"fmax": 30000.0}, {"fmin": 500.0, "fmax": 400.0}, {"n_mels": 0}, {"hop_length": 512.0}, {"top_db": 0.0}]
)
def test_config_errors(bad) -> None:
    with pytest.raises(MelConfigError):
        MelConfig(**bad)
