"""Tests of trainer.features.mel against librosa (computed here, independently of the module's own reference).

Short audio (0.5 s) except for the one full-size shape check.
"""
from __future__ import annotations

import dataclasses

import keras
import librosa
import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from trainer.augment.pitch_warp import spectrum_warp
from trainer.features.mel import (
    LogMel,
    MelConfig,
    MelConfigError,
    librosa_log_mel,
    log_mel,
    mel_power,
    num_frames,
    pcen_smoother,
    pcen_smoothing_coefficient,
    pitch_filter_banks,
    power_to_db,
)

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


@pytest.mark.parametrize("scaling", ["minmax", "pcen"])
def test_log_mel_layer_saves_and_loads(tmp_path, scaling) -> None:
    cfg = dataclasses.replace(CFG, n_mels=64, top_db=60.0, scaling=scaling, pcen_time_constant=0.2)
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


def _tone(freq: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(N) / SR)).astype(np.float32)


def _band_profile(power: np.ndarray) -> np.ndarray:
    """Mean power per mel band over frames: [n_mels, frames] -> [n_mels]."""
    return power.mean(axis=-1)


@pytest.mark.parametrize("freq", [500.0, 1000.0, 3000.0, 8000.0])
def test_mel_pitch_shift_moves_a_tone_by_semitones(freq) -> None:
    """The tone test: a tone at f shifted by n semitones looks like a tone generated at f * 2^(n/12)."""
    steps = [-5, -3, -1, 1, 2, 4, 5]
    shifted = mel_power(np.stack([_tone(freq)] * len(steps)), CFG, tf.constant(steps), 5).numpy()  # [7, 128, T]
    bands = np.arange(CFG.n_mels)
    for n, got in zip(steps, shifted):
        # The reference: librosa's mel of a tone generated at the shifted frequency.
        expected = librosa.feature.melspectrogram(y=_tone(freq * 2 ** (n / 12)), sr=SR, n_fft=2048, hop_length=512,
                                                  n_mels=128, fmin=84.0, fmax=15056.0, power=2.0)
        got_profile, expected_profile = _band_profile(got), _band_profile(expected)
        assert np.argmax(got_profile) == np.argmax(expected_profile), n
        centroid = lambda p: float(np.sum(p * bands) / np.sum(p))
        assert abs(centroid(got_profile) - centroid(expected_profile)) < 0.1, n  # in mel bands
        assert got_profile.sum() == pytest.approx(expected_profile.sum(), rel=0.03), n  # the tone keeps its level


def test_mel_pitch_shift_by_zero_is_the_plain_mel_and_silence_stays_zero() -> None:
    banks, first = pitch_filter_banks(CFG, 5)
    plain = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=128, fmin=84.0, fmax=15056.0)
    unshifted = np.zeros_like(plain)
    unshifted[:, first:first + banks.shape[-1]] = banks[5]
    np.testing.assert_array_equal(unshifted, plain.astype(np.float32))  # the n = 0 bank is exactly librosa's
    y = SIGNALS["chirp"]
    np.testing.assert_allclose(log_mel(y[None], CFG, tf.constant([0]), 5).numpy(), log_mel(y[None], CFG).numpy(),
                               atol=1e-6)  # only the matmul's summation order differs
    silent = log_mel(np.zeros((2, N), np.float32), CFG, tf.constant([-5, 5]), 5).numpy()
    assert np.isfinite(silent).all() and not silent.any()


def test_mel_pitch_shift_picks_each_examples_bank() -> None:
    batch = np.stack([SIGNALS["noise"], SIGNALS["chirp"], SIGNALS["sine"]])
    steps = [3, -2, 0]
    together = log_mel(batch, CFG, tf.constant(steps), 5).numpy()
    for y, n, got in zip(batch, steps, together):
        np.testing.assert_allclose(got, log_mel(y, CFG, tf.constant(n), 5).numpy(), atol=1e-6)  # unbatched too
    assert not np.allclose(together[1], log_mel(batch[1], CFG).numpy(), atol=1e-2)
    with pytest.raises(tf.errors.InvalidArgumentError):
        log_mel(batch[:1], CFG, tf.constant([6]), 5)  # outside the precomputed banks: an error, not a clamp


def test_spectrum_warp_conserves_energy() -> None:
    np.testing.assert_array_equal(spectrum_warp(64, 1.0), np.eye(64))
    for ratio in (2 ** (-5 / 12), 2 ** (3 / 12)):
        warp = spectrum_warp(1025, ratio)
        kept = int(1000 / max(ratio, 1.0))  # source bins whose shifted power stays below Nyquist
        np.testing.assert_allclose(warp[:, 1:kept].sum(axis=0), 1.0, atol=1e-9)
        # A single source bin's power lands around ratio times its frequency.
        column = warp[:, 400]
        assert abs(np.sum(column * np.arange(1025)) - 400 * ratio) < 0.5  # within the output bin grid
    with pytest.raises(MelConfigError):
        pitch_filter_banks(CFG, -1)


@pytest.mark.parametrize(
    "bad", [{"fmax": 30000.0}, {"fmin": 500.0, "fmax": 400.0}, {"n_mels": 0}, {"hop_length": 512.0}, {"top_db": 0.0},
            {"scaling": "pcen", "pcen_gain": 1.5}, {"pcen_time_constant": 0.0}, {"scaling": "log"}]
)
def test_config_errors(bad) -> None:
    with pytest.raises(MelConfigError):
        MelConfig(**bad)


PCEN = MelConfig(scaling="pcen")


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_pcen_equals_librosa(name) -> None:
    # librosa.pcen on librosa's mel of the waveform scaled to the int32 range, as librosa's docs do for float audio.
    y = SIGNALS[name]
    power = librosa.feature.melspectrogram(y=y.astype(np.float64) * 2.0**31, sr=SR, n_fft=2048, hop_length=512,
                                           n_mels=128, fmin=84.0, fmax=15056.0, power=2.0)
    # librosa's defaults (gain 0.98, bias 2, power 0.5, 0.4 s) with the smoother started at rest on the first frame.
    b = pcen_smoothing_coefficient(PCEN)
    zi = scipy.signal.lfilter_zi([b], [1, b - 1]) * power[:, :1]
    expected = librosa.pcen(power, sr=SR, hop_length=512, zi=zi)
    np.testing.assert_allclose(log_mel(y[None], PCEN).numpy()[0], expected, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(librosa_log_mel(y, PCEN), expected, rtol=2e-3, atol=2e-3)


def test_pcen_flattens_stationary_noise_and_keeps_an_onset() -> None:
    # 3 s of steady white noise with a tone burst at 2 s: PCEN divides each band by its own smoothed past, so the
    # noise's bands settle to one level whatever the noise's loudness, while the burst's onset stands out of it.
    n = 3 * SR
    noise = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    tone = np.zeros(n, np.float32)
    tone[2 * SR: 2 * SR + SR // 4] = 2.0 * np.sin(2 * np.pi * 3000.0 * np.arange(SR // 4) / SR)
    agc = dataclasses.replace(PCEN, pcen_gain=1.0)  # a full gain control: loudness divides out exactly
    quiet, loud = (log_mel((g * noise + tone * g)[None], agc).numpy()[0] for g in (0.01, 1.0))
    settled = slice(20, 180)  # before the burst (frame 2 s = 187)
    # A 40 dB louder recording gives the same PCEN (in dB every value would move by 40).
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3)
    band = int(np.argmax(loud[:, 190]))
    assert abs(librosa.mel_frequencies(128, fmin=84.0, fmax=15056.0)[band] - 3000.0) < 150.0
    assert loud[band, 190] > 5.0 * loud[band, settled].mean()  # the onset: far above the settled noise


def test_pcen_smoother_is_the_one_pole_filter_started_at_steady_state() -> None:
    b, frames = 0.2, 7
    energy = np.random.default_rng(2).uniform(0.5, 2.0, frames)
    expected, state = [], energy[0]  # M_0 = E_0: the filter at rest on the first frame
    for t in range(frames):
        state = b * energy[t] + (1 - b) * state if t else energy[0]
        expected.append(state)
    got = energy[None].astype(np.float32) @ pcen_smoother(frames, b).numpy()
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
