"""trainer.augment.field (random EQ, reverb, time stretch) on known signals, and their place in the chain.

Audio is plain numpy (tones, clicks, seeded noise) of 1 s at 48 kHz or shorter, to stay fast.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core import settings
from trainer.augment.chain import AugmentConfig, augment_with_seed, build_augmentation
from trainer.augment.field import RandomEQ, Reverb, TimeStretch
from trainer.augment.waveform import AugmentError, OneOf, TimeShift, VolumeControl

SR = 48000


def _tone(freq: float, n: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _noise(n: int = SR, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


STEADY = slice(SR // 10, None)  # past the filters' start-up transient


# ----------------------------------------------------------------------------- EQ


def test_lowpass_keeps_tones_below_and_cuts_tones_above() -> None:
    eq = RandomEQ(sample_rate=SR)
    for freq, kept in ((500.0, True), (8000.0, False)):
        y = _tone(freq)
        ratio = _rms(eq.apply(y, lowpass_hz=2000.0)[STEADY]) / _rms(y[STEADY])
        assert ratio > 0.9 if kept else ratio < 0.1, (freq, ratio)


def test_highpass_keeps_tones_above_and_cuts_tones_below() -> None:
    eq = RandomEQ(sample_rate=SR)
    for freq, kept in ((8000.0, True), (500.0, False)):
        y = _tone(freq)
        ratio = _rms(eq.apply(y, highpass_hz=2000.0)[STEADY]) / _rms(y[STEADY])
        assert ratio > 0.9 if kept else ratio < 0.1, (freq, ratio)


def test_peaking_filter_boosts_and_cuts_at_its_centre() -> None:
    eq = RandomEQ(sample_rate=SR)
    y = _tone(1000.0)
    for gain_db in (6.0, -6.0):
        ratio = _rms(eq.apply(y, peak_hz=1000.0, peak_db=gain_db)[STEADY]) / _rms(y[STEADY])
        assert ratio == pytest.approx(10 ** (gain_db / 20), rel=0.05)


def test_band_limiting_never_adds_energy() -> None:
    eq = RandomEQ(sample_rate=SR, peak_db_limit=0.0)
    rng = np.random.default_rng(3)
    applied = 0
    for seed in range(20):
        y = _noise(SR // 4, seed)
        params = eq.draw(rng, y.shape[0])
        assert params is not None and params["peak_hz"] is None
        assert 6000 <= (params["lowpass_hz"] or 6000) <= 16000 and 50 <= (params["highpass_hz"] or 50) <= 400
        out = eq.apply(y, **params)
        assert out.dtype == np.float32 and out.shape == y.shape
        assert np.sum(np.square(out, dtype=np.float64)) <= np.sum(np.square(y, dtype=np.float64))
        applied += 1
    assert applied == 20


# ----------------------------------------------------------------------------- reverb


def _decay_rt60(x: np.ndarray, start: int) -> float:
    """RT60 measured from the slope of x's energy envelope (10 ms frames, in dB) from `start` on."""
    frame = SR // 100
    tail = x[start:].astype(np.float64)
    frames = tail[: tail.shape[0] // frame * frame].reshape(-1, frame)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-30)
    t = (np.arange(frames.shape[0]) + 0.5) * frame / SR
    fit = (db > db.max() - 40) & (t > 0.02)  # the decay above the floor, past the first frame
    slope = np.polyfit(t[fit], db[fit], 1)[0]  # dB per second
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_reverb_turns_an_impulse_into_a_tail_that_falls_60_db_in_rt60(rt60) -> None:
    reverb = Reverb(rt60_min=rt60, rt60_max=rt60, wet_min=1.0, wet_max=1.0, sample_rate=SR)
    click = SR // 10
    y = np.zeros(SR, np.float32)
    y[click] = 1.0
    out = reverb(y, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == y.shape
    assert np.max(np.abs(out[:click])) < 1e-6 * np.max(np.abs(out))  # causal (up to FFT rounding)
    assert _rms(out) == pytest.approx(_rms(y), rel=1e-4)  # rescaled to the input's RMS
    assert _decay_rt60(out, click) == pytest.approx(rt60, rel=0.3)


def test_reverb_keeps_silence_length_and_dry_input() -> None:
    reverb = Reverb(sample_rate=SR)
    rng = np.random.default_rng(1)
    assert not np.any(reverb(np.zeros(SR // 2, np.float32), rng))
    y = _noise(SR // 2)
    params = reverb.sample(rng, y.shape[0])
    assert 0.2 <= params["rt60"] <= 1.0 and 0.1 <= params["wet"] <= 0.5
    assert reverb.apply(y, **params).shape == y.shape
    assert np.array_equal(reverb.apply(y, **{**params, "wet": 0.0}), y)
    wet = reverb.apply(y, **params)
    assert _rms(wet) == pytest.approx(_rms(y), rel=1e-4) and not np.allclose(wet, y)


# ----------------------------------------------------------------------------- time stretch


def _peak_bin(x: np.ndarray) -> int:
    return int(np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))))


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_time_stretch_keeps_the_pitch_and_moves_onsets_by_the_rate(rate) -> None:
    stretch = TimeStretch()
    y = _tone(1500.0)
    out = stretch.apply(y, rate=rate)
    assert out.dtype == np.float32 and out.shape == y.shape
    steady = slice(SR // 10, SR * 8 // 10)  # inside the stretched tone for both rates
    assert abs(_peak_bin(out[steady]) - _peak_bin(y[steady])) <= 2
    onset = SR // 2  # a burst at t = 0.5 s (a single-sample click smears over a vocoder frame)
    burst = np.zeros(SR, np.float32)
    burst[onset : onset + 480] = _tone(3000.0, 480)
    moved = stretch.apply(burst, rate=rate)
    energy = np.convolve(np.square(moved, dtype=np.float64), np.ones(480), "same")
    centre = int(np.argmax(energy)) - 240  # the burst's start
    assert centre == pytest.approx(onset / rate, abs=0.01 * SR)


def test_time_stretch_keeps_silence_and_leaves_short_input() -> None:
    stretch = TimeStretch()
    assert not np.any(stretch(np.zeros(SR // 2, np.float32), np.random.default_rng(0)))
    short = _noise(1000)
    assert stretch.apply(short, rate=1.1) is short
    assert 0.9 <= stretch.sample(np.random.default_rng(0), SR)["rate"] <= 1.1


# ----------------------------------------------------------------------------- chain, config, flags


FIELD_ON = {"time_stretch_p": 1.0, "reverb_p": 1.0, "eq_p": 1.0}


def test_off_by_default_and_in_the_documented_order() -> None:
    default = build_augmentation(AugmentConfig(), SR, seed=3).chain.transforms
    assert [type(t) for t in default] == [OneOf, TimeShift, VolumeControl]  # the recipe's chain
    on = build_augmentation(AugmentConfig(**FIELD_ON), SR, seed=3).chain.transforms
    assert [type(t) for t in on] == [TimeStretch, Reverb, RandomEQ, OneOf, TimeShift, VolumeControl]
    assert on[3:] == default  # the rest of the chain unchanged
    for name, kind in (("time_stretch_p", TimeStretch), ("reverb_p", Reverb), ("eq_p", RandomEQ)):
        only = build_augmentation(AugmentConfig(**{name: 0.5}), SR).chain.transforms
        assert [type(t) for t in only] == [kind, OneOf, TimeShift, VolumeControl] and only[0].p == 0.5


def test_field_chain_is_seeded_float32_and_keeps_silence() -> None:
    augmentation = build_augmentation(AugmentConfig(**FIELD_ON, noise_bank_seconds=1.0), SR)
    y = _noise(SR // 2)
    first, _ = augment_with_seed(augmentation, y, 7)
    again, _ = augment_with_seed(augmentation, y, 7)
    assert first.dtype == np.float32 and first.shape == y.shape and np.isfinite(first).all()
    assert np.array_equal(first, again) and not np.allclose(first, augment_with_seed(augmentation, y, 8)[0])
    silent, _ = augment_with_seed(augmentation, np.zeros(SR // 2, np.float32), 7)
    assert not np.any(silent)


def test_flags_exist_and_bad_values_are_refused() -> None:
    names = {name for name, _, _, _ in settings.leaf_fields(AugmentConfig)}
    assert {"eq_p", "eq_lowpass_min_hz", "eq_lowpass_max_hz", "eq_highpass_min_hz", "eq_highpass_max_hz",
            "eq_peak_db_limit", "reverb_p", "reverb_rt60_min", "reverb_rt60_max", "reverb_wet_min", "reverb_wet_max",
            "time_stretch_p", "time_stretch_min", "time_stretch_max"} <= names
    cfg = settings.apply_overrides(AugmentConfig(), {"eq_p": 0.3, "reverb_rt60_max": 2.0}, flags=True)
    assert (cfg.eq_p, cfg.reverb_rt60_max) == (0.3, 2.0)
    assert settings.apply_overrides(AugmentConfig(), dataclasses.asdict(cfg)) == cfg
    for bad in ({"eq_p": 1.5}, {"reverb_p": -0.1}, {"time_stretch_p": 2.0}, {"time_stretch_min": 0.0},
                {"time_stretch_min": 1.2}, {"reverb_rt60_min": 0.0}, {"reverb_rt60_min": 2.0},
                {"reverb_wet_max": 1.5}, {"reverb_wet_min": 0.6}, {"eq_lowpass_min_hz": 20000.0},
                {"eq_highpass_max_hz": 7000.0}, {"eq_highpass_min_hz": 0.0}, {"eq_peak_db_limit": -1.0}):
        with pytest.raises(AugmentError):
            AugmentConfig(**bad)
    for absurd in ({"time_stretch_min": 0.01}, {"reverb_rt60_max": 1000.0}, {"eq_peak_db_limit": 200.0}):
        with pytest.raises(settings.ConfigError, match="out of range"):
            settings.apply_overrides(AugmentConfig(), absurd, flags=True)
    with pytest.raises(AugmentError, match="Nyquist"):  # a low-pass range past 8 kHz at 16 kHz
        build_augmentation(AugmentConfig(eq_p=0.5), 16000)
