"""Waveform transforms (numpy) of the training augmentation: noise, pitch shift, time shift, volume.

A *transform* is a callable ``(y: float32 [n], rng: np.random.Generator) -> float32 [n]``. Every
random draw comes from the `rng` argument, never from numpy's global state, so parallel tf.data
workers do not share or race on a generator and a run with a fixed seed is reproducible. A
`RandomTransform` splits the random draw (`sample`) from the deterministic effect (`apply`), which
the tests check against formulas. trainer.augment.chain builds the chain from an AugmentConfig.

    from trainer.augment.waveform import Compose, GaussianNoiseSNR, TimeShift
    chain = Compose((GaussianNoiseSNR(min_snr_db=5, max_snr_db=20), TimeShift(sample_rate=48000)))
    y_aug = chain(y, np.random.default_rng(1))                       # float32 [n] -> [n]

Fixes relative to the seed notebook: integer ranges include their upper bound (the seed's
``np.random.randint(-5, 5)`` never shifted up by 5 semitones); silent input stays silent and finite;
``TimeShift(padding="zero")`` with a zero shift no longer zeroes the whole signal (the seed's
``augmented[0:] = 0``); float32 in and out with the input's length; the fade envelope of a
one-sample input does not divide by zero.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar, Literal

import colorednoise
import numpy as np

from core import choices

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

SnrReference = Literal["peak", "rms"]
PitchMethod = Literal["mel", "librosa"]
Padding = Literal["replace", "zero"]
VolumeMode = Literal["uniform", "fade", "cosine", "sine"]
VOLUME_MODES = choices.of(VolumeMode)

_TWO_PI = 2.0 * math.pi


class AugmentError(ValueError):
    """An augmentation parameter is out of range, or a config has unknown keys or wrong types."""


def _read_only(array: np.ndarray) -> np.ndarray:
    """Marks a cached array read-only (threads share it) and returns it."""
    array.flags.writeable = False
    return array


def check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise AugmentError(f"{name} must be in [0, 1], got {p}")


def check_range(name: str, low: float, high: float) -> None:
    if not low <= high:
        raise AugmentError(f"{name} needs min <= max, got min={low} max={high}")


def check_nonnegative(name: str, value: float) -> None:
    if value < 0:
        raise AugmentError(f"{name} must be >= 0, got {value}")


# ----------------------------------------------------------------------------- building blocks


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomTransform(abc.ABC):
    """A transform applied with probability `p`; subclasses split the random draw from the effect.

    `sample(rng, n)` draws the parameters for an input of n samples, `apply(y, **params)` is the
    deterministic effect (testable against a formula). Parameters:
      p: probability of applying the transform to a given input (1.0 = always, as in the seed).
    """

    p: float = 1.0
    # Fields of the subclasses that must be >= 0 (their Literal-typed fields are checked by core.choices).
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_probability(f"{name}.p", self.p)
        for field in self._NONNEGATIVE:
            check_nonnegative(f"{name}.{field}", getattr(self, field))
        choices.check(self, AugmentError)

    def __call__(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        params = self.draw(rng, y.shape[0])
        return y if params is None else self.apply(y, **params)

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, Any] | None:
        """The parameters of one application to n samples, or None when skipped (probability 1 - p)."""
        if self.p < 1.0 and rng.random() >= self.p:
            return None
        return self.sample(rng, n)

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        """Draws this transform's random parameters for an input of `n` samples."""

    @abc.abstractmethod
    def apply(self, y: np.ndarray, **params: Any) -> np.ndarray:
        """Applies the transform with the given parameters: float32 [n] -> float32 [n]."""


@dataclasses.dataclass(frozen=True)
class Compose:
    """Applies `transforms` in order (an empty Compose is the identity)."""

    transforms: tuple[Transform, ...] = ()

    def __call__(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            y = transform(y, rng)
        return y


@dataclasses.dataclass(frozen=True)
class OneOf:
    """With probability `p`, applies one of `transforms` chosen uniformly at random.

    Parameters:
      transforms: the candidates (at least one).
      p: probability of applying any of them.
    """

    transforms: tuple[Transform, ...]
    p: float = 1.0

    def __post_init__(self) -> None:
        if not self.transforms:
            raise AugmentError("OneOf needs at least one transform")
        check_probability("OneOf.p", self.p)

    def __call__(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.p < 1.0 and rng.random() >= self.p:
            return y
        return self.transforms[int(rng.integers(len(self.transforms)))](y, rng)


# ----------------------------------------------------------------------------- noise


def _level(x: np.ndarray, reference: str) -> float:
    """Peak absolute value or RMS of x (float64 for the reduction)."""
    if reference == "peak":
        return float(np.max(np.abs(x))) if x.size else 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class _NoiseSNR(RandomTransform):
    """Adds noise at a signal-to-noise ratio drawn uniformly from [min_snr_db, max_snr_db].

    Parameters:
      min_snr_db, max_snr_db: SNR range in dB (the seed: 5..20).
      reference: "peak" (the seed: the noise's peak is the signal's peak / 10^(snr/20)) or "rms"
        (the usual power SNR: the noise's RMS is the signal's RMS / 10^(snr/20)).
      bank_seconds: 0 = fresh noise per call (the seed's way). > 0 = a cut at a random offset,
        with a random sign, of a bank of max(bank_seconds * sample_rate, n) samples of the same
        noise made once per process (`noise_bank`): a copy instead of generating noise per window
        (costs: docs/results.md). The trade-off: windows share bank material (a 60 s bank
        holds 50 s of distinct 10 s offsets, each with either sign), so the noise varies less
        between windows than fresh draws; its distribution, spectrum and SNR are the same.
      sample_rate: Hz, to convert bank_seconds.
      bank_seed: seed of the bank (the training config's seed), so a seeded run is reproducible.
    Silent input gets zero noise (its level is 0), so it stays silent rather than becoming NaN.
    """

    min_snr_db: float = 5.0
    max_snr_db: float = 20.0
    reference: SnrReference = "peak"
    bank_seconds: float = 0.0
    sample_rate: int = 48000
    bank_seed: int = 0
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("bank_seconds",)
    _BANK_STREAM: ClassVar[int] = 0  # per noise kind, so banks of one seed are independent

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(f"{type(self).__name__} SNR (dB)", self.min_snr_db, self.max_snr_db)

    @abc.abstractmethod
    def generate(self, rng: np.random.Generator, n: int, window: int) -> np.ndarray:
        """n samples of this noise, float [n]; `window` (<= n): the length a cut of them will have."""

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Unscaled noise, float [n]: fresh, or a cut of the bank (see bank_seconds)."""
        if self.bank_seconds == 0 or n == 0:
            return self.generate(rng, n, n)
        bank = noise_bank(self, max(int(round(self.bank_seconds * self.sample_rate)), n), n)
        start = int(rng.integers(0, bank.shape[0] - n, endpoint=True))
        piece = bank[start : start + n]  # a read-only view
        return -piece if rng.random() < 0.5 else piece

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"snr_db": rng.uniform(self.min_snr_db, self.max_snr_db), "noise": self.noise(rng, n)}

    def apply(self, y: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
        noise_level = _level(noise, self.reference)
        if noise_level == 0.0:
            return y
        gain = _level(y, self.reference) / 10.0 ** (snr_db / 20.0) / noise_level
        out = np.multiply(noise, np.float32(gain), dtype=np.float32)  # the one new array
        out += y
        return out


@functools.lru_cache(maxsize=8)
def noise_bank(kind: _NoiseSNR, num_samples: int, window: int) -> np.ndarray:
    """kind.generate(num_samples) seeded by kind.bank_seed, float32 (read-only, once per process and arguments)."""
    rng = np.random.default_rng([kind.bank_seed, kind._BANK_STREAM])
    return _read_only(kind.generate(rng, num_samples, window).astype(np.float32))


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianNoiseSNR(_NoiseSNR):
    """White Gaussian noise at a random SNR (parameters: see _NoiseSNR)."""

    _BANK_STREAM: ClassVar[int] = 1

    def generate(self, rng: np.random.Generator, n: int, window: int) -> np.ndarray:
        return rng.standard_normal(n, dtype=np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinkNoiseSNR(_NoiseSNR):
    """Pink (1/f power) noise from colorednoise at a random SNR (parameters: see _NoiseSNR)."""

    _BANK_STREAM: ClassVar[int] = 2

    def generate(self, rng: np.random.Generator, n: int, window: int) -> np.ndarray:
        # The spectrum is 1/f down to 1/window cycles per sample and flat below (colorednoise's fmin),
        # as in a fresh draw of `window` samples, whose lowest frequency is 1/window: so a cut of a
        # longer bank does not wander more at sub-audio frequencies than the seed's per-window noise.
        return colorednoise.powerlaw_psd_gaussian(1, n, fmin=min(1.0 / max(window, 1), 0.5), random_state=rng)


# ----------------------------------------------------------------------------- pitch shift


@dataclasses.dataclass(frozen=True, kw_only=True)
class PitchShift(RandomTransform):
    """Shifts pitch by an integer number of semitones drawn uniformly from [-max_steps, max_steps].

    Parameters:
      max_steps: largest shift in semitones, both directions included (the seed: 5).
      method: "librosa" (``librosa.effects.pitch_shift``: time stretch + soxr_hq resampling) shifts
        the waveform; "mel" only draws the steps (trainer.augment.chain.Augmentation) and the mel front end
        shifts (trainer.features.mel's warped filter banks), so `apply` refuses it.
      sample_rate: Hz, used by the "librosa" method.
      n_fft, hop_length: STFT of the "librosa" method (librosa's defaults: 2048, 512).
    """

    max_steps: int = 5
    method: PitchMethod = "librosa"
    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 512
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("max_steps",)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"n_steps": int(rng.integers(-self.max_steps, self.max_steps, endpoint=True))}

    def apply(self, y: np.ndarray, n_steps: int) -> np.ndarray:
        if self.method == "mel":
            raise AugmentError("PitchShift(method='mel') is applied by the mel front end (trainer.features.mel "
                               "pitch_steps), not to a waveform; use trainer.augment.chain.Augmentation")
        import librosa  # deferred: only this method needs it

        if n_steps == 0:
            return y
        shifted = librosa.effects.pitch_shift(
            y, sr=self.sample_rate, n_steps=n_steps, n_fft=self.n_fft, hop_length=self.hop_length
        )
        return shifted.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- time shift, volume


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimeShift(RandomTransform):
    """Shifts the signal by an integer number of samples drawn uniformly from [-max, +max].

    Parameters:
      max_shift_seconds: largest shift (the seed: 4 s); max = round(max_shift_seconds * sample_rate).
      sample_rate: Hz.
      padding: "replace" (circular: what leaves one end re-enters at the other) or "zero" (the
        vacated end is zeroed: a positive shift delays the signal and zeroes the start, a negative
        one advances it and zeroes the end).
    """

    max_shift_seconds: float = 4.0
    sample_rate: int = 48000
    padding: Padding = "replace"
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("max_shift_seconds",)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        limit = int(round(self.max_shift_seconds * self.sample_rate))
        return {"shift": int(rng.integers(-limit, limit, endpoint=True))}

    def apply(self, y: np.ndarray, shift: int) -> np.ndarray:
        shifted = np.roll(y, shift)
        if self.padding == "zero" and shift > 0:
            shifted[:shift] = 0.0
        elif self.padding == "zero" and shift < 0:
            shifted[shift:] = 0.0
        return shifted


@functools.lru_cache(maxsize=16)
def _envelope_shape(n: int, mode: str) -> np.ndarray:
    """The envelope's exponent per unit dB, float32 [n] (read-only, cached): see `volume_envelope`."""
    if mode not in VOLUME_MODES:
        raise AugmentError(f"volume mode={mode!r} is not one of {list(VOLUME_MODES)}")
    i = np.arange(n, dtype=np.float64)
    if mode == "uniform":
        shape = np.ones(n)
    elif mode == "fade":
        shape = (n - 1 - i) / max(n - 1, 1)
    elif mode == "cosine":
        shape = np.cos(_TWO_PI * i / n)
    else:
        shape = np.sin(_TWO_PI * i / n)
    return _read_only((shape * (math.log(10.0) / 20.0)).astype(np.float32))  # 10^(d s/20) = e^(d s ln(10)/20)


def volume_envelope(n: int, db: float, mode: str) -> np.ndarray:
    """Gain per sample, float32 [n], of a volume change of `db` decibels shaped by `mode`.

    With i = 0..n-1: uniform 10^(db/20); fade 10^(db * (n-1-i)/(n-1) / 20) (db at the start, 0 dB at
    the end); cosine 10^(db * cos(2 pi i / n) / 20); sine 10^(db * sin(2 pi i / n) / 20).
    """
    envelope = np.multiply(_envelope_shape(n, mode), np.float32(db))
    return np.exp(envelope, out=envelope)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VolumeControl(RandomTransform):
    """Multiplies by a gain envelope of db decibels, db drawn uniformly from [-db_limit, db_limit].

    Parameters:
      db_limit: largest |db| (the seed: 10).
      mode: envelope shape, one of "uniform", "fade", "cosine", "sine" (see `volume_envelope`).
    """

    db_limit: float = 10.0
    mode: VolumeMode = "sine"
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("db_limit",)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"db": rng.uniform(-self.db_limit, self.db_limit)}

    def apply(self, y: np.ndarray, db: float) -> np.ndarray:
        out = volume_envelope(y.shape[0], db, self.mode)
        out *= y
        return out


