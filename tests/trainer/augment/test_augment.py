"""trainer.augment.waveform and trainer.augment.chain: each transform against its formula or a measurement; the chain.

Audio is plain numpy (seeded noise, sines, zeros) of 1 s at 48 kHz or shorter, to stay fast.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np
import pytest

from core import settings
from trainer.augment import waveform
from trainer.augment.chain import (
    Augmentation,
    AugmentConfig,
    augment_with_seed,
    build_augmentation,
)
from trainer.augment.waveform import (
    Compose,
    GaussianNoiseSNR,
    OneOf,
    PinkNoiseSNR,
    PitchShift,
    TimeShift,
    VolumeControl,
)
from trainer.recipe import config

SR = 48000


def _noise(n: int = SR, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _tone(freq: float, n: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def _chain(**overrides) -> Compose:
    """The waveform chain of AugmentConfig(**overrides) at SR."""
    return build_augmentation(AugmentConfig(**overrides), SR).chain


BANK = {"bank_seconds": 2.0, "sample_rate": SR}  # 2 s banks for the <= 1 s test signals


def _all_transforms() -> list:
    transforms = {
        "gaussian": GaussianNoiseSNR(),
        "pink": PinkNoiseSNR(),
        "gaussian-bank": GaussianNoiseSNR(**BANK),
        "pink-bank": PinkNoiseSNR(**BANK),
        "gaussian-rms": GaussianNoiseSNR(reference="rms"),
        "pitch-librosa": PitchShift(max_steps=5),
        "shift-replace": TimeShift(max_shift_seconds=0.5, sample_rate=SR),
        "shift-zero": TimeShift(max_shift_seconds=0.5, sample_rate=SR, padding="zero"),
        **{f"volume-{m}": VolumeControl(mode=m) for m in waveform.VOLUME_MODES},
        "default-chain": _chain(),  # noise from banks, time shift, volume (the pitch shift is the mel's)
        "librosa-chain": _chain(pitch_shift_method="librosa", noise_bank_seconds=0.0),
    }
    return [pytest.param(t, id=name) for name, t in transforms.items()]


# The seed notebook's chain: every piece on every window.
SEED_CHAIN = {"noise_p": 1.0, "pitch_shift_p": 1.0, "time_shift_p": 1.0, "volume_p": 1.0}


def test_default_chain_is_the_recipes_and_every_preset_uses_it() -> None:
    augmentation = build_augmentation(AugmentConfig(), SR, seed=3)
    noise, shift, volume = augmentation.chain.transforms
    assert (noise.p, shift.p, volume.p) == (0.5, 0.5, 0.5)
    assert augmentation.mel_pitch is None and augmentation.max_pitch_steps == 0  # no pitch shift
    for preset in ("full", "cpu", "tiny"):  # no preset overrides the chain's defaults
        assert config.preset_config(preset).augment == AugmentConfig()


def test_seed_chain_is_the_seeds() -> None:
    augmentation = build_augmentation(AugmentConfig(**SEED_CHAIN), SR, seed=3)
    noise, shift, volume = augmentation.chain.transforms
    assert isinstance(noise, OneOf) and noise.p == 1.0
    assert [type(t) for t in noise.transforms] == [GaussianNoiseSNR, PinkNoiseSNR]
    assert all((t.min_snr_db, t.max_snr_db, t.p, t.bank_seconds, t.bank_seed) == (5.0, 20.0, 1.0, 60.0, 3)
               for t in noise.transforms)
    pitch = augmentation.mel_pitch  # applied by the mel front end
    assert (type(pitch), pitch.max_steps, pitch.p, pitch.method) == (PitchShift, 5, 1.0, "mel")
    assert augmentation.max_pitch_steps == 5
    assert (type(shift), shift.max_shift_seconds, shift.padding, shift.sample_rate) == (TimeShift, 4.0, "replace", SR)
    assert (type(volume), volume.db_limit, volume.mode) == (VolumeControl, 10.0, "sine")
    # The waveform pitch shifters sit where the seed had them, after the noise.
    waveform_pitch = _chain(pitch_shift_method="librosa", **SEED_CHAIN).transforms[1]
    assert (type(waveform_pitch), waveform_pitch.max_steps, waveform_pitch.method) == (PitchShift, 5, "librosa")


def test_pieces_are_removable() -> None:
    assert build_augmentation(AugmentConfig(enabled=False), SR) == Augmentation()
    augmentation = build_augmentation(AugmentConfig(pitch_shift_p=0.0, pink_noise=False, volume_p=0.0), SR)
    assert [type(t) for t in augmentation.chain.transforms] == [OneOf, TimeShift]
    assert [type(t) for t in augmentation.chain.transforms[0].transforms] == [GaussianNoiseSNR]
    assert augmentation.mel_pitch is None and augmentation.max_pitch_steps == 0
    assert _chain(gaussian_noise=False, pink_noise=False, pitch_shift_method="librosa",
                  **SEED_CHAIN).transforms[0].__class__ is PitchShift


def test_config_dict_round_trip_and_errors() -> None:
    cfg = AugmentConfig(pitch_shift_max_steps=3, volume_mode="fade", noise_snr_reference="rms")
    assert settings.apply_overrides(AugmentConfig(), dataclasses.asdict(cfg)) == cfg
    assert all(isinstance(v, (bool, int, float, str)) for v in dataclasses.asdict(cfg).values())
    with pytest.raises(settings.ConfigError, match="unknown config key.*pitch_steps"):
        settings.apply_overrides(AugmentConfig(), {**dataclasses.asdict(cfg), "pitch_steps": 2})
    for bad in (
        {"noise_p": 1.5},
        {"noise_min_snr_db": 30.0},
        {"pitch_shift_max_steps": 2.5},
        {"pitch_shift_max_steps": -1},
        {"volume_mode": "square"},
        {"time_shift_padding": "reflect"},
        {"pitch_shift_method": "resample"},
        {"pitch_shift_method": "vocoder"},  # removed: the mel-stage shift is the cheap one
        {"noise_bank_seconds": -1.0},
        {"enabled": 1},
    ):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


@pytest.mark.parametrize("transform", _all_transforms())
def test_float32_same_length_and_silence_stays_finite(transform) -> None:
    rng = np.random.default_rng(1)
    for y in (_noise(SR // 2), np.zeros(SR // 2, np.float32)):
        out = transform(y, rng)
        assert out.dtype == np.float32 and out.shape == y.shape
        assert np.isfinite(out).all()
    assert not np.any(transform(np.zeros(SR // 2, np.float32), rng))  # silence stays silent


@pytest.mark.parametrize("bank_seconds", [0.0, 2.0], ids=["fresh", "bank"])
@pytest.mark.parametrize("kind", [GaussianNoiseSNR, PinkNoiseSNR])
@pytest.mark.parametrize("reference", ["peak", "rms"])
def test_measured_snr_is_within_range(kind, reference, bank_seconds) -> None:
    transform = kind(min_snr_db=5.0, max_snr_db=20.0, reference=reference, bank_seconds=bank_seconds, sample_rate=SR)
    y = _tone(440.0) + _noise(seed=3)
    measured = []
    for seed in range(12):
        added = transform(y, np.random.default_rng(seed)).astype(np.float64) - y
        if reference == "peak":
            ratio = np.max(np.abs(y)) / np.max(np.abs(added))
        else:
            ratio = np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(added**2))
        measured.append(20 * np.log10(ratio))
    assert min(measured) >= 5.0 - 1e-3 and max(measured) <= 20.0 + 1e-3
    assert np.ptp(measured) > 3.0  # the SNR is drawn, not fixed


@pytest.mark.parametrize("bank_seconds", [0.0, 4.0], ids=["fresh", "bank"])
@pytest.mark.parametrize("kind, slope", [(GaussianNoiseSNR, 0.0), (PinkNoiseSNR, -1.0)])
def test_noise_colour(kind, slope, bank_seconds) -> None:
    noise = kind(bank_seconds=bank_seconds, sample_rate=SR).noise(np.random.default_rng(0), 1 << 16)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size)
    band = (freqs > 1e-3) & (freqs < 0.4)
    fitted = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.1


@pytest.mark.parametrize("kind", [GaussianNoiseSNR, PinkNoiseSNR])
def test_noise_bank_cuts_vary_and_are_seeded(kind) -> None:
    transform = kind(bank_seconds=1.0, sample_rate=SR, bank_seed=5)
    n = SR // 4
    cuts = [transform.noise(np.random.default_rng(seed), n) for seed in range(40)]
    assert all(c.shape == (n,) and c.dtype == np.float32 for c in cuts)
    bank = waveform.noise_bank(transform, SR, n)
    assert bank.shape == (SR,) and waveform.noise_bank(transform, SR, n) is bank  # made once
    signs = set()
    for cut in cuts:  # each cut is +-bank[start:start + n] for some start
        starts = [s for s in range(SR - n + 1) if abs(bank[s]) == abs(cut[0]) and np.array_equal(np.abs(bank[s:s + n]), np.abs(cut))]
        assert len(starts) == 1
        signs.add(float(np.sign(cut[0]) * np.sign(bank[starts[0]])))
    assert signs == {-1.0, 1.0}
    assert len({float(c[0]) for c in cuts}) > 30  # different offsets for different generators
    assert np.array_equal(cuts[3], transform.noise(np.random.default_rng(3), n))
    other_seed = kind(bank_seconds=1.0, sample_rate=SR, bank_seed=6)
    assert not np.array_equal(waveform.noise_bank(other_seed, SR, n), bank)
    assert not np.allclose(waveform.noise_bank(GaussianNoiseSNR(bank_seed=5), SR, n)[:1000],
                           waveform.noise_bank(PinkNoiseSNR(bank_seed=5), SR, n)[:1000], atol=0.1)


@pytest.mark.parametrize("n_steps", [-5, -3, -1, 1, 2, 4, 5])
def test_pitch_shift_moves_a_tone_by_semitones(n_steps) -> None:
    f0 = 1000.0
    out = PitchShift(max_steps=5, sample_rate=SR).apply(_tone(f0), n_steps=n_steps)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    target = f0 * 2 ** (n_steps / 12)
    assert abs(freqs[np.argmax(spectrum)] - target) <= 2.0  # 1 Hz bins; semitones here are >= 45 Hz apart
    near = np.abs(freqs - target) <= 25.0
    assert np.sum(spectrum[near] ** 2) > 0.9 * np.sum(spectrum**2)  # the tone moved, nothing left behind


def test_mel_pitch_method_only_draws_the_steps() -> None:
    augmentation = build_augmentation(AugmentConfig(pitch_shift_max_steps=2, pitch_shift_p=1.0, noise_p=0.0,
                                                    time_shift_p=0.0, volume_p=0.0), SR)
    y = _noise(SR // 10)
    results = [augment_with_seed(augmentation, y, seed) for seed in range(200)]
    assert all(np.array_equal(out, y) and isinstance(steps, np.int32) for out, steps in results)
    assert {int(steps) for _, steps in results} == {-2, -1, 0, 1, 2}  # both bounds reached
    with pytest.raises(ValueError, match="mel front end"):
        PitchShift(method="mel").apply(y, n_steps=2)
    never = build_augmentation(AugmentConfig(pitch_shift_p=0.0), SR)
    assert {int(augment_with_seed(never, y, seed)[1]) for seed in range(20)} == {0}


def test_integer_ranges_reach_both_bounds() -> None:
    rng = np.random.default_rng(0)
    steps = {PitchShift(max_steps=2).sample(rng, SR)["n_steps"] for _ in range(300)}
    assert steps == {-2, -1, 0, 1, 2}
    shifts = {TimeShift(max_shift_seconds=0.002, sample_rate=1000).sample(rng, 10)["shift"] for _ in range(300)}
    assert shifts == {-2, -1, 0, 1, 2}


def test_time_shift_replace_and_zero_padding() -> None:
    y = np.arange(1, 11, dtype=np.float32)  # no zeros, so zeroed samples are visible
    replace = TimeShift(padding="replace")
    assert replace.apply(y, shift=3).tolist() == [8, 9, 10, 1, 2, 3, 4, 5, 6, 7]
    zero = TimeShift(padding="zero")
    assert zero.apply(y, shift=-3).tolist() == [4, 5, 6, 7, 8, 9, 10, 0, 0, 0]  # right end zeroed
    assert zero.apply(y, shift=3).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert zero.apply(y, shift=0).tolist() == y.tolist()  # the seed zeroed everything here
    assert y.tolist() == list(range(1, 11))  # input untouched


@pytest.mark.parametrize("mode", waveform.VOLUME_MODES)
def test_volume_envelopes_follow_the_formula(mode) -> None:
    n, db = 1000, 6.0
    i = np.arange(n)
    shape = {
        "uniform": np.ones(n),
        "fade": (n - 1 - i) / (n - 1),
        "cosine": np.cos(2 * np.pi * i / n),
        "sine": np.sin(2 * np.pi * i / n),
    }[mode]
    y = _noise(n)
    out = VolumeControl(mode=mode).apply(y, db=db)
    np.testing.assert_allclose(out, y * 10 ** (db * shape / 20), rtol=1e-5, atol=1e-7)
    assert VolumeControl(mode="fade").apply(np.ones(1, np.float32), db=db).tolist() == [1.0]  # no 0/0


def test_probability_and_one_of() -> None:
    y = _noise(100)
    never = VolumeControl(p=0.0, mode="uniform")
    rng = np.random.default_rng(0)
    assert all(never(y, rng) is y for _ in range(50))
    half = VolumeControl(p=0.5, mode="uniform")
    applied = sum(not np.array_equal(half(y, rng), y) for _ in range(400))
    assert 160 <= applied <= 240  # binomial(400, 0.5): mean 200, sd 10
    pick = OneOf((lambda x, r: x + 1, lambda x, r: x + 2))
    chosen = [float(pick(np.zeros(1, np.float32), rng)[0]) for _ in range(200)]
    assert 70 <= chosen.count(1.0) <= 130 and chosen.count(1.0) + chosen.count(2.0) == 200


@pytest.mark.parametrize("method", ["mel", "librosa"])
def test_seeded_runs_are_reproducible_and_leave_global_state_alone(method) -> None:
    augmentation = build_augmentation(AugmentConfig(time_shift_max_seconds=0.2, noise_bank_seconds=1.0,
                                                    pitch_shift_method=method), SR)
    y = _noise(SR // 2)
    np.random.seed(123)
    global_state = np.random.get_state()[1].copy()
    first, first_steps = augment_with_seed(augmentation, y, 7)
    again, again_steps = augment_with_seed(augmentation, y, 7)
    assert np.array_equal(first, again) and first_steps == again_steps
    assert np.array_equal(np.random.get_state()[1], global_state)
    others = [augment_with_seed(augmentation, y, s)[0] for s in (8, -8, [7, 1])]
    assert all(not np.allclose(first, other) for other in others)
    # Parallel calls (as tf.data's numpy_function threads make them) give the serial results.
    seeds = list(range(8))
    serial = [augment_with_seed(augmentation, y, s) for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda s: augment_with_seed(augmentation, y, s), seeds))
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(serial, parallel))


def test_transforms_are_serialisable_dataclasses() -> None:
    pitch = build_augmentation(AugmentConfig(**SEED_CHAIN), SR).mel_pitch
    assert dataclasses.asdict(pitch) == {
        "p": 1.0, "max_steps": 5, "method": "mel", "sample_rate": SR, "n_fft": 2048, "hop_length": 512
    }
    assert PitchShift(**dataclasses.asdict(pitch)) == pitch
    with pytest.raises(ValueError):
        Compose((OneOf(()),))
