"""Waveform augmentations (numpy), the seed notebook's chain with its defects fixed.

A *transform* is a callable ``(y: float32 [n], rng: np.random.Generator) -> float32 [n]``. Every
random draw comes from the `rng` argument, never from numpy's global state, so parallel tf.data
workers do not share or race on a generator and a run with a fixed seed is reproducible: the
input pipeline gives each element its own seed and calls `augment_with_seed` through
`tf.numpy_function`.

The default chain is the seed's (every piece always applied)::

    Compose([OneOf([GaussianNoiseSNR(5..20 dB), PinkNoiseSNR(5..20 dB)]),
             PitchShift(-5..+5 semitones), TimeShift(-4..+4 s, "replace"),
             VolumeControl(-10..+10 dB, "sine")])

Noise is cut from per-process banks by default (``noise_bank_seconds``; see _NoiseSNR for the
trade-off), 0 draws fresh noise per window as the seed did.

`build_augmentation` turns an `AugmentConfig` into an `Augmentation`: that chain, and, with
``pitch_shift_method="mel"`` (the default), the pitch shift moved to the mel front end: the
numpy side only draws the steps and returns them with the waveform, trainer.mel applies them as
warped mel filter banks (see `Augmentation` for why the order is still the seed's).

Fixes relative to the seed: integer ranges include their upper bound (the seed's
``np.random.randint(-5, 5)`` never shifted up by 5 semitones); silent input stays silent and finite;
``TimeShift(padding="zero")`` with a zero shift no longer zeroes the whole signal (the seed's
``augmented[0:] = 0``); float32 in and out with the input's length; the fade envelope of a
one-sample input does not divide by zero.

CPU per 10 s window at 48 kHz (benchmarks/bench_input.py measures them): pitch shift "mel" ~0
here (~1 ms more in TF: a gather and a ~35 % wider mel matmul), "vocoder" ~30 ms
(`vocoder_pitch_shift`, a single-STFT phase vocoder), "librosa" ~70 ms
(``librosa.effects.pitch_shift``: time stretch + soxr resampling); noise ~0.4-0.8 ms cut from a
bank, fresh ~5 ms (white, numpy's float32 ziggurat) or ~25 ms (pink, colorednoise's float64
FFT); time shift and volume < 1 ms each.

Usage::

    from trainer.augment import AugmentConfig, build_augmentation, augment_with_seed
    augmentation = build_augmentation(AugmentConfig(), sample_rate=48000, seed=0)
    y_aug, pitch_steps = augment_with_seed(augmentation, y, seed=1234)   # float32 [n] -> [n], int32
    features = trainer.mel.log_mel(y_aug, mel_cfg, pitch_steps, augmentation.max_pitch_steps)
    waveform_only = build_augmentation(AugmentConfig(pitch_shift_method="vocoder"), 48000).chain
    y_shifted = waveform_only(y, np.random.default_rng(1))                # float32 [n] -> [n]
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar, Mapping, Sequence

import colorednoise
import numpy as np
import scipy.fft

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

SNR_REFERENCES = ("peak", "rms")
PITCH_METHODS = ("mel", "vocoder", "librosa")
PADDING_MODES = ("replace", "zero")
VOLUME_MODES = ("uniform", "fade", "cosine", "sine")

_TWO_PI = 2.0 * math.pi


class AugmentError(ValueError):
    """An augmentation parameter is out of range, or a config has unknown keys or wrong types."""


def _read_only(array: np.ndarray) -> np.ndarray:
    """Marks a cached array read-only (threads share it) and returns it."""
    array.flags.writeable = False
    return array


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise AugmentError(f"{name} must be in [0, 1], got {p}")


def _check_range(name: str, low: float, high: float) -> None:
    if not low <= high:
        raise AugmentError(f"{name} needs min <= max, got min={low} max={high}")


def _check_nonnegative(name: str, value: float) -> None:
    if value < 0:
        raise AugmentError(f"{name} must be >= 0, got {value}")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise AugmentError(f"{name} must be one of {list(choices)}, got {value!r}")


# ----------------------------------------------------------------------------- building blocks


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomTransform(abc.ABC):
    """A transform applied with probability `p`; subclasses split the random draw from the effect.

    `sample(rng, n)` draws the parameters for an input of n samples, `apply(y, **params)` is the
    deterministic effect (testable against a formula). Parameters:
      p: probability of applying the transform to a given input (1.0 = always, as in the seed).
    """

    p: float = 1.0
    # Parameter checks shared by the subclasses: fields that must be >= 0, fields with fixed choices.
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ()
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_probability(f"{name}.p", self.p)
        for field in self._NONNEGATIVE:
            _check_nonnegative(f"{name}.{field}", getattr(self, field))
        for field, choices in self._CHOICES.items():
            _check_choice(f"{name}.{field}", getattr(self, field), choices)

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
        _check_probability("OneOf.p", self.p)

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
        noise made once per process (`noise_bank`): ~0.4 ms per 10 s window at 48 kHz instead of
        ~5 ms (white) or ~25 ms (pink). The trade-off: windows share bank material (a 60 s bank
        holds 50 s of distinct 10 s offsets, each with either sign), so the noise varies less
        between windows than fresh draws; its distribution, spectrum and SNR are the same.
      sample_rate: Hz, to convert bank_seconds.
      bank_seed: seed of the bank (the training config's seed), so a seeded run is reproducible.
    Silent input gets zero noise (its level is 0), so it stays silent rather than becoming NaN.
    """

    min_snr_db: float = 5.0
    max_snr_db: float = 20.0
    reference: str = "peak"
    bank_seconds: float = 0.0
    sample_rate: int = 48000
    bank_seed: int = 0
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("bank_seconds",)
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"reference": SNR_REFERENCES}
    _BANK_STREAM: ClassVar[int] = 0  # per noise kind, so banks of one seed are independent

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_range(f"{type(self).__name__} SNR (dB)", self.min_snr_db, self.max_snr_db)

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


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 [n_fft] (read-only, cached)."""
    return _read_only((0.5 - 0.5 * np.cos(_TWO_PI * np.arange(n_fft) / n_fft)).astype(np.float32))


@functools.lru_cache(maxsize=8)
def _inverse_window_sum(n: int, n_fft: int, hop: int) -> np.ndarray:
    """1 / (sum of squared synthesis windows) over the n output samples, float32 [n] (cached).

    Weighted overlap-add with this normalisation inverts `_stft` exactly (librosa.istft's rule).
    """
    frames, overlap = 1 + n // hop, n_fft // hop
    total = np.zeros((frames + overlap - 1, hop), np.float32)
    squared = (_hann(n_fft) ** 2).reshape(overlap, hop)
    for j in range(overlap):
        total[j : j + frames] += squared[j]
    total = total.reshape(-1)[n_fft // 2 : n_fft // 2 + n]
    tiny = np.finfo(np.float32).tiny
    return _read_only(np.where(total > tiny, 1.0 / np.maximum(total, tiny), 0.0).astype(np.float32))


def _stft(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centered (zero-padded) STFT: float32 [n] -> complex64 [1 + n // hop, n_fft // 2 + 1]."""
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # [T, n_fft] (a view)
    return scipy.fft.rfft(frames * _hann(n_fft), axis=-1)


def _istft(spec: np.ndarray, n: int, n_fft: int, hop: int) -> np.ndarray:
    """Inverse of `_stft` for n output samples: complex [T, n_fft // 2 + 1] -> float32 [n]."""
    frames = scipy.fft.irfft(spec, n=n_fft, axis=-1)  # [T, n_fft]
    frames *= _hann(n_fft)
    num_frames, overlap = frames.shape[0], n_fft // hop
    # Overlap-add in hop-sized chunks: chunk j of frame t lands on output chunk t + j.
    out = np.zeros((num_frames + overlap - 1, hop), np.float32)
    chunks = frames.reshape(num_frames, overlap, hop)
    for j in range(overlap):
        out[j : j + num_frames] += chunks[:, j]
    return out.reshape(-1)[n_fft // 2 : n_fft // 2 + n] * _inverse_window_sum(n, n_fft, hop)


def _wrap(phase: np.ndarray) -> np.ndarray:
    """Wraps float32 phases into [-pi, pi] in place."""
    turns = np.multiply(phase, np.float32(1.0 / _TWO_PI))
    np.rint(turns, out=turns)
    turns *= np.float32(_TWO_PI)
    phase -= turns
    return phase


@dataclasses.dataclass(frozen=True)
class _ShiftPlan:
    """What `vocoder_pitch_shift` precomputes per (n_steps, n_fft, hop): K = output bins kept."""

    alpha: float  # frequency factor 2^(n_steps/12)
    low: np.ndarray  # intp [K]: input bin below k / alpha
    high: np.ndarray  # intp [K]: input bin above k / alpha
    frac: np.ndarray  # float32 [K]: interpolation weight of `high`
    nearest: np.ndarray  # intp [K]: input bin nearest k / alpha, whose phase drives output bin k
    bin_advance: np.ndarray  # float32 [K]: phase advance per hop of the centre of bin `nearest`
    step: np.ndarray  # float32 [K]: alpha * bin_advance mod 2 pi (exact per-hop term, kept small)
    phase_offset: np.ndarray  # float32 [K]: pi * (k - nearest), re-references frame-centre phases


@functools.lru_cache(maxsize=64)
def _shift_plan(n_steps: float, n_fft: int, hop: int) -> _ShiftPlan:
    num_bins = n_fft // 2 + 1
    alpha = 2.0 ** (n_steps / 12.0)
    source = np.arange(num_bins) / alpha  # fractional input bin feeding each output bin
    kept = int(np.searchsorted(source, num_bins - 1, side="right"))  # output bins below Nyquist
    source = source[:kept]
    low = np.floor(source).astype(np.intp)
    nearest = np.rint(source).astype(np.intp)
    bin_advance = (_TWO_PI * hop / n_fft) * nearest  # float64 [K]
    return _ShiftPlan(
        alpha=alpha,
        low=_read_only(low),
        high=_read_only(np.minimum(low + 1, num_bins - 1)),
        frac=_read_only((source - low).astype(np.float32)),
        nearest=_read_only(nearest),
        bin_advance=_read_only(bin_advance.astype(np.float32)),
        step=_read_only(np.mod(alpha * bin_advance, _TWO_PI).astype(np.float32)),
        phase_offset=_read_only((np.pi * (np.arange(kept) - nearest)).astype(np.float32)),
    )


def vocoder_pitch_shift(y: np.ndarray, n_steps: float, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Shifts pitch by `n_steps` semitones with one STFT, keeping the length: float32 [n] -> [n].

    A frequency-domain phase vocoder: output bin k takes the magnitude at input bin k / a
    (a = 2^(n_steps/12), linear interpolation between bins) and the instantaneous frequency of the
    nearest input bin times a, whose phase is integrated over frames. Phases are measured from the
    frame centre, so that bins of one spectral peak, duplicated (a < 1) or skipped (a > 1), stay in
    phase. Content shifted above Nyquist is dropped. A pure tone at f comes out at f * a; its level
    may change by up to ~20*log10(a) dB (the peak's width in bins scales with a).

    Parameters:
      n_steps: semitones (may be fractional; 0 returns the input unchanged).
      n_fft: FFT size (window length); a multiple of hop_length, at least 2 * hop_length.
      hop_length: hop between frames; n_fft / 4 keeps phase estimates unambiguous.
    """
    if n_fft % hop_length or 2 * hop_length > n_fft:
        raise AugmentError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length}), at least twice it")
    y = np.asarray(y, dtype=np.float32)
    if n_steps == 0 or y.shape[0] == 0:
        return y
    spec = _stft(y, n_fft, hop_length)  # [T, F] complex64
    num_frames = spec.shape[0]
    plan = _shift_plan(float(n_steps), n_fft, hop_length)

    magnitude = np.abs(spec)  # [T, F]
    out_mag = magnitude[:, plan.low]  # [T, K]; + frac * (magnitude[:, high] - out_mag), in place:
    upper = magnitude[:, plan.high]
    upper -= out_mag
    upper *= plan.frac
    out_mag += upper

    phase = np.angle(spec)[:, plan.nearest]  # [T, K]
    # Deviation of each hop's phase advance from the bin centre's, wrapped to [-pi, pi].
    deviation = np.subtract(phase[1:], phase[:-1])  # [T-1, K]
    deviation -= plan.bin_advance
    _wrap(deviation)
    out_phase = np.empty_like(phase)  # [T, K]
    out_phase[0] = 0.0
    # One large call, not a loop over frames: tf.data runs this in threads that share the GIL.
    np.cumsum(deviation, axis=0, out=out_phase[1:])
    out_phase *= np.float32(plan.alpha)
    out_phase += np.arange(num_frames, dtype=np.float32)[:, None] * plan.step
    out_phase += phase[0] + plan.phase_offset
    _wrap(out_phase)

    # All F bins, the dropped ones zero: scipy's irfft is ~1.7x slower when it has to pad them itself.
    out = np.zeros(spec.shape, np.complex64)  # [T, F]
    kept = out_mag.shape[1]
    np.multiply(out_mag, np.cos(out_phase), out=out.real[:, :kept])
    np.multiply(out_mag, np.sin(out_phase), out=out.imag[:, :kept])
    return _istft(out, y.shape[0], n_fft, hop_length)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PitchShift(RandomTransform):
    """Shifts pitch by an integer number of semitones drawn uniformly from [-max_steps, max_steps].

    Parameters:
      max_steps: largest shift in semitones, both directions included (the seed: 5).
      method: "vocoder" (`vocoder_pitch_shift`, the default of this class) or "librosa"
        (``librosa.effects.pitch_shift``: time stretch + soxr_hq resampling, ~2.4x the CPU) shift
        the waveform; "mel" only draws the steps (`Augmentation`), the mel front end shifts
        (trainer.mel's warped filter banks), so `apply` refuses it.
      sample_rate: Hz, used by the "librosa" method.
      n_fft, hop_length: STFT of either method (librosa's defaults: 2048, 512).
    """

    max_steps: int = 5
    method: str = "vocoder"
    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 512
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("max_steps",)
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"method": PITCH_METHODS}

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"n_steps": int(rng.integers(-self.max_steps, self.max_steps, endpoint=True))}

    def apply(self, y: np.ndarray, n_steps: int) -> np.ndarray:
        if self.method == "mel":
            raise AugmentError("PitchShift(method='mel') is applied by the mel front end (trainer.mel "
                               "pitch_steps), not to a waveform; use Augmentation")
        if self.method == "vocoder":
            return vocoder_pitch_shift(y, n_steps, self.n_fft, self.hop_length)
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
    padding: str = "replace"
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("max_shift_seconds",)
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"padding": PADDING_MODES}

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
    _check_choice("volume mode", mode, VOLUME_MODES)
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
    mode: str = "sine"
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("db_limit",)
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"mode": VOLUME_MODES}

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"db": rng.uniform(-self.db_limit, self.db_limit)}

    def apply(self, y: np.ndarray, db: float) -> np.ndarray:
        out = volume_envelope(y.shape[0], db, self.mode)
        out *= y
        return out


# ----------------------------------------------------------------------------- config and chain


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation chain; scalar fields only (one CLI flag / JSON key each).

    Defaults are the seed's chain. A piece with probability 0 is left out of the chain;
    `enabled=False` leaves out everything (the input pipeline can then skip the numpy call).
    """

    enabled: bool = True
    noise_p: float = 1.0  # probability of adding one noise kind (chosen uniformly among those on)
    gaussian_noise: bool = True
    pink_noise: bool = True
    noise_bank_seconds: float = 60.0  # 0 = fresh noise per window; > 0 cut from a bank (see _NoiseSNR)
    noise_min_snr_db: float = 5.0
    noise_max_snr_db: float = 20.0
    noise_snr_reference: str = "peak"  # "peak" (the seed) | "rms"
    pitch_shift_p: float = 1.0
    pitch_shift_max_steps: int = 5
    pitch_shift_method: str = "mel"  # "mel" (warped mel filter banks) | "vocoder" | "librosa" (waveform)
    time_shift_p: float = 1.0
    time_shift_max_seconds: float = 4.0
    time_shift_padding: str = "replace"  # "replace" | "zero"
    volume_p: float = 1.0
    volume_db_limit: float = 10.0
    volume_mode: str = "sine"  # "uniform" | "fade" | "cosine" | "sine"
    # After the log-mel, as TF ops (trainer.spec_augment): SpecAugment masks per example, mixup per batch.
    time_masks: int = 0  # masks of up to time_mask_fraction of the frames each
    time_mask_fraction: float = 0.1
    freq_masks: int = 0  # masks of up to freq_mask_fraction of the mel bands each
    freq_mask_fraction: float = 0.1
    mixup_p: float = 0.0  # share of a batch's examples mixed with another example of the batch
    mixup_alpha: float = 0.4  # mixing weight ~ Beta(alpha, alpha)

    def __post_init__(self) -> None:
        _check_scalar_types(self)
        for name in ("noise_p", "pitch_shift_p", "time_shift_p", "volume_p", "mixup_p", "time_mask_fraction",
                     "freq_mask_fraction"):
            _check_probability(name, getattr(self, name))
        for name in ("time_masks", "freq_masks"):
            _check_nonnegative(name, getattr(self, name))
        if not self.mixup_alpha > 0:
            raise AugmentError(f"mixup_alpha must be > 0, got {self.mixup_alpha!r}")
        _check_range("noise_min_snr_db/noise_max_snr_db", self.noise_min_snr_db, self.noise_max_snr_db)
        _check_nonnegative("noise_bank_seconds", self.noise_bank_seconds)
        _check_choice("noise_snr_reference", self.noise_snr_reference, SNR_REFERENCES)
        _check_nonnegative("pitch_shift_max_steps", self.pitch_shift_max_steps)
        _check_choice("pitch_shift_method", self.pitch_shift_method, PITCH_METHODS)
        _check_nonnegative("time_shift_max_seconds", self.time_shift_max_seconds)
        _check_choice("time_shift_padding", self.time_shift_padding, PADDING_MODES)
        _check_nonnegative("volume_db_limit", self.volume_db_limit)
        _check_choice("volume_mode", self.volume_mode, VOLUME_MODES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "AugmentConfig":
        """Builds a config from a dict such as `to_dict()`'s; unknown keys raise AugmentError."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise AugmentError(f"unknown augmentation keys: {sorted(unknown)}")
        return cls(**values)


_SCALAR_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _check_scalar_types(config: Any) -> None:
    """Raises AugmentError when a field's value is not of its annotated scalar type."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        accepted = _SCALAR_TYPES[str(field.type)]
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise AugmentError(f"{field.name} must be a {field.type}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The training augmentation: a waveform chain, then maybe a pitch shift done by the mel front end.

    Calling it with (y float32 [n], rng) returns (the chain's output float32 [n], pitch_steps):
    the semitones trainer.mel.log_mel must shift by (`pitch_steps=`, `max_pitch_steps=`
    `max_pitch_steps`), 0 without a mel-stage pitch shift. The steps are drawn first, from the same
    generator, so one seed still fixes everything.

    Why the shift can move to the end: the seed shifts pitch after adding noise (so the noise is
    shifted too, as here) and before the time shift and the volume envelope. A pitch shift that
    keeps the duration is time-invariant, so it commutes with a circular time shift; and a gain
    that is nearly constant over one STFT window passes through it: the +-10 dB sine envelope over
    10 s changes by at most 0.27 dB within a 43 ms window. So shifting the mel of the chain's output
    is, up to that, the seed's order.

    Parameters:
      chain: the waveform transforms (noise, waveform pitch shift if any, time shift, volume).
      mel_pitch: PitchShift(method="mel") whose steps the mel front end applies, or None.
    """

    chain: Compose = Compose()
    mel_pitch: PitchShift | None = None

    @property
    def max_pitch_steps(self) -> int:
        """The range of pitch_steps, [-max, max], i.e. of the warped mel banks to precompute."""
        return self.mel_pitch.max_steps if self.mel_pitch is not None else 0

    def __call__(self, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        drawn = self.mel_pitch.draw(rng, y.shape[0]) if self.mel_pitch is not None else None
        return self.chain(y, rng), (drawn["n_steps"] if drawn else 0)


def build_augmentation(cfg: AugmentConfig, sample_rate: int, seed: int = 0) -> Augmentation:
    """The augmentation described by `cfg` for audio at `sample_rate` Hz (the identity if disabled).

    `seed` (the training config's) seeds the per-process pink noise bank.
    """
    if not cfg.enabled:
        return Augmentation()
    transforms: list[Transform] = []
    noise_kinds = [kind for kind, on in ((GaussianNoiseSNR, cfg.gaussian_noise), (PinkNoiseSNR, cfg.pink_noise)) if on]
    if noise_kinds and cfg.noise_p > 0:
        noises = tuple(
            kind(min_snr_db=cfg.noise_min_snr_db, max_snr_db=cfg.noise_max_snr_db, reference=cfg.noise_snr_reference,
                 bank_seconds=cfg.noise_bank_seconds, sample_rate=sample_rate, bank_seed=seed)
            for kind in noise_kinds
        )
        transforms.append(OneOf(noises, p=cfg.noise_p))
    mel_pitch = None
    if cfg.pitch_shift_p > 0 and cfg.pitch_shift_max_steps > 0:
        pitch = PitchShift(p=cfg.pitch_shift_p, max_steps=cfg.pitch_shift_max_steps, method=cfg.pitch_shift_method,
                           sample_rate=sample_rate)
        if pitch.method == "mel":
            mel_pitch = pitch  # drawn by Augmentation, applied by the mel front end
        else:
            transforms.append(pitch)
    if cfg.time_shift_p > 0 and cfg.time_shift_max_seconds > 0:
        transforms.append(
            TimeShift(
                p=cfg.time_shift_p,
                max_shift_seconds=cfg.time_shift_max_seconds,
                sample_rate=sample_rate,
                padding=cfg.time_shift_padding,
            )
        )
    if cfg.volume_p > 0 and cfg.volume_db_limit > 0:
        transforms.append(VolumeControl(p=cfg.volume_p, db_limit=cfg.volume_db_limit, mode=cfg.volume_mode))
    return Augmentation(Compose(tuple(transforms)), mel_pitch)


def augment_with_seed(augmentation: Augmentation, y: np.ndarray, seed: Any) -> tuple[np.ndarray, np.int32]:
    """Applies `augmentation` to y with a generator seeded by `seed`: (float32 [n], int32 pitch steps).

    This is the function tf.numpy_function calls with a per-element seed. `seed` is an int or an
    array of ints; negative int64 values (as tf.random produces) are taken by their bit pattern.
    """
    seed_words = np.atleast_1d(np.asarray(seed, dtype=np.int64)).view(np.uint64)
    rng = np.random.default_rng(seed_words)
    y = np.asarray(y, dtype=np.float32)
    out, pitch_steps = augmentation(y, rng)
    if out.shape != y.shape:  # a transform bug, not a user error
        raise AssertionError(f"augmentation changed shape {y.shape} -> {out.shape}")
    return np.ascontiguousarray(out, dtype=np.float32), np.int32(pitch_steps)
