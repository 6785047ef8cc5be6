"""Waveform transforms (numpy) that mimic how the field colours a call: random EQ, reverb, time stretch.

Same contract as trainer.augment.waveform: ``(y: float32 [n], rng) -> float32 [n]``, every draw from
`rng`, `sample` draws and `apply` is the deterministic effect; silence stays silent. All three are off
in AugmentConfig's defaults (probability 0); trainer.augment.chain places them in the chain.

    from trainer.augment.field import RandomEQ, Reverb, TimeStretch
    y_far = Reverb(rt60_min=0.3, rt60_max=1.0, sample_rate=48000)(y, np.random.default_rng(1))

- `RandomEQ`: a Butterworth low-pass and/or high-pass with random cutoffs, and optionally a peaking
  bump or cut, as a microphone and the distance (air absorbs the highs) colour a call.
- `Reverb`: convolution with a synthetic impulse response, exponentially decaying noise of random RT60,
  mixed with the dry signal at a random wet share, rescaled to the input's RMS.
- `TimeStretch`: librosa's phase-vocoder stretch (pitch kept) by a random rate, cropped or zero-padded
  at the end back to the input's length.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import scipy.signal

from trainer.augment.waveform import (
    AugmentError,
    RandomTransform,
    _level,
    check_probability,
    check_range,
)

_LN_1000 = 3.0 * math.log(10.0)  # an amplitude e^(-k t) falls by 60 dB (a factor 1000) at t = ln(1000) / k


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise AugmentError(f"{name} must be > 0, got {value}")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Uniform in log frequency: an octave is as likely at 100 Hz as at 10 kHz."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def peaking_sos(freq_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One second-order section [1, 6] of a peaking filter (the RBJ audio-EQ cookbook): gain_db at freq_hz."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    b = np.array([1.0 + alpha * a, -2.0 * cos_w0, 1.0 - alpha * a])
    den = np.array([1.0 + alpha / a, -2.0 * cos_w0, 1.0 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomEQ(RandomTransform):
    """A random low-pass, high-pass or both (one of the three uniformly), then maybe a peaking bump/cut.

    Cutoffs and the peak's centre are drawn log-uniformly from their ranges. The filters are causal
    (scipy.signal.sosfilt, as a microphone is), so a call is delayed by their group delay, a few ms
    at most. No rescaling: a band-limited call is quieter, as a distant one is, and without the peak
    the output never has more energy than the input (Butterworth gains are <= 1).

    A cutoff inside a species' band removes its call and keeps its label, so keep the low-pass range
    above and the high-pass range below the bands that matter.

    Parameters:
      lowpass_min_hz, lowpass_max_hz: low-pass cutoff range (below the Nyquist frequency).
      highpass_min_hz, highpass_max_hz: high-pass cutoff range (below the low-pass range).
      peak_db_limit: the peaking filter's gain is drawn from [-limit, +limit] dB; 0 = no peaking filter.
        Its centre is drawn from [highpass_min_hz, lowpass_max_hz], its Q is `peak_q`.
      order: Butterworth order of each pass filter (4: 24 dB per octave).
      sample_rate: Hz.
    """

    lowpass_min_hz: float = 6000.0
    lowpass_max_hz: float = 16000.0
    highpass_min_hz: float = 50.0
    highpass_max_hz: float = 400.0
    peak_db_limit: float = 6.0
    peak_q: float = 1.0
    order: int = 4
    sample_rate: int = 48000
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("peak_db_limit",)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lowpass_min_hz", "highpass_min_hz", "peak_q", "order", "sample_rate"):
            check_positive(f"RandomEQ.{name}", getattr(self, name))
        check_range("RandomEQ low-pass (Hz)", self.lowpass_min_hz, self.lowpass_max_hz)
        check_range("RandomEQ high-pass (Hz)", self.highpass_min_hz, self.highpass_max_hz)
        if not self.highpass_max_hz < self.lowpass_min_hz:
            raise AugmentError(f"RandomEQ needs the high-pass range below the low-pass range, got "
                               f"highpass_max_hz={self.highpass_max_hz} lowpass_min_hz={self.lowpass_min_hz}")
        if not self.lowpass_max_hz < self.sample_rate / 2:
            raise AugmentError(f"RandomEQ.lowpass_max_hz={self.lowpass_max_hz} must be below the Nyquist "
                               f"frequency {self.sample_rate / 2} Hz")

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        # The same number of draws whichever filters are chosen, so one choice does not shift the stream.
        kind = int(rng.integers(3))  # 0: low-pass, 1: high-pass, 2: both
        lowpass = _log_uniform(rng, self.lowpass_min_hz, self.lowpass_max_hz)
        highpass = _log_uniform(rng, self.highpass_min_hz, self.highpass_max_hz)
        peak_hz = _log_uniform(rng, self.highpass_min_hz, self.lowpass_max_hz)
        peak_db = float(rng.uniform(-self.peak_db_limit, self.peak_db_limit))
        return {"lowpass_hz": lowpass if kind != 1 else None, "highpass_hz": highpass if kind != 0 else None,
                "peak_hz": peak_hz if self.peak_db_limit > 0 else None, "peak_db": peak_db}

    def apply(self, y: np.ndarray, lowpass_hz: float | None = None, highpass_hz: float | None = None,
              peak_hz: float | None = None, peak_db: float = 0.0) -> np.ndarray:
        sections = []
        if lowpass_hz is not None:
            sections.append(scipy.signal.butter(self.order, lowpass_hz, "lowpass", fs=self.sample_rate, output="sos"))
        if highpass_hz is not None:
            sections.append(scipy.signal.butter(self.order, highpass_hz, "highpass", fs=self.sample_rate, output="sos"))
        if peak_hz is not None and peak_db != 0.0:
            sections.append(peaking_sos(peak_hz, peak_db, self.peak_q, self.sample_rate))
        if not sections or y.shape[0] == 0:
            return y
        return scipy.signal.sosfilt(np.concatenate(sections), y.astype(np.float64)).astype(np.float32)


def reverb_impulse_response(noise: np.ndarray, rt60: float, sample_rate: int) -> np.ndarray:
    """`noise` [m] times an envelope whose energy falls by 60 dB in rt60 seconds, float64 [m]."""
    t = np.arange(noise.shape[0]) / sample_rate
    return noise * np.exp(-_LN_1000 / rt60 * t)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reverb(RandomTransform):
    """Mixes y with y convolved with a synthetic reverberation tail: (1 - wet) y + wet (y * h), rescaled.

    h is Gaussian noise under an exponential envelope that falls by 60 dB in RT60 seconds (a diffuse
    field, as under a canopy), rt60 and wet drawn uniformly from their ranges; h is cut at rt60 (the
    rest is below -60 dB) and at the input's length. The output keeps the input's length (the tail past
    the end is dropped) and is rescaled to the input's RMS, so the energy, not the peak, is kept: a
    reverberant call is smeared, its peak lower. The dry part is the direct sound; wet=0 returns y.

    Parameters:
      rt60_min, rt60_max: range of the reverberation time in seconds (> 0).
      wet_min, wet_max: range of the reverberant share in [0, 1].
      sample_rate: Hz.
    """

    rt60_min: float = 0.2
    rt60_max: float = 1.0
    wet_min: float = 0.1
    wet_max: float = 0.5
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("Reverb.rt60_min", self.rt60_min)
        check_positive("Reverb.sample_rate", self.sample_rate)
        check_range("Reverb RT60 (s)", self.rt60_min, self.rt60_max)
        check_probability("Reverb.wet_min", self.wet_min)
        check_probability("Reverb.wet_max", self.wet_max)
        check_range("Reverb wet share", self.wet_min, self.wet_max)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        rt60 = float(rng.uniform(self.rt60_min, self.rt60_max))
        wet = float(rng.uniform(self.wet_min, self.wet_max))
        length = max(1, min(n, math.ceil(rt60 * self.sample_rate)))
        return {"rt60": rt60, "wet": wet, "noise": rng.standard_normal(length)}

    def apply(self, y: np.ndarray, rt60: float, wet: float, noise: np.ndarray) -> np.ndarray:
        level = _level(y, "rms")
        if wet == 0.0 or level == 0.0:
            return y
        dry = y.astype(np.float64)
        tail = scipy.signal.oaconvolve(dry, reverb_impulse_response(noise, rt60, self.sample_rate))[: y.shape[0]]
        tail_level = _level(tail, "rms")
        if tail_level > 0:  # the tail at the dry signal's level, so `wet` is a share of like energies
            tail *= level / tail_level
        mixed = (1.0 - wet) * dry + wet * tail
        mixed_level = _level(mixed, "rms")
        return (mixed * (level / mixed_level) if mixed_level > 0 else mixed).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimeStretch(RandomTransform):
    """Changes the tempo by a rate drawn uniformly from [min_rate, max_rate], keeping the pitch.

    librosa.effects.time_stretch (a phase vocoder) makes about n / rate samples; the result is kept
    from the start: cropped at the end (rate < 1) or zero-padded at the end (rate > 1). So an event at
    time t moves to t / rate, and with it the window's boxes: a call near the end can leave the window
    while its label stays, and a rate above 1 leaves the last (1 - 1/rate) of the window silent. That
    is why the default range is small (0.9 to 1.1: at most 1 s of a 10 s window moves or is silent).
    An input shorter than one STFT frame (n_fft) is returned unchanged.

    Parameters:
      min_rate, max_rate: range of the rate (> 0; > 1 faster and shorter, < 1 slower and longer).
      n_fft, hop_length: STFT of the phase vocoder (librosa's defaults: 2048, 512).
    """

    min_rate: float = 0.9
    max_rate: float = 1.1
    n_fft: int = 2048
    hop_length: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("min_rate", "n_fft", "hop_length"):
            check_positive(f"TimeStretch.{name}", getattr(self, name))
        check_range("TimeStretch rate", self.min_rate, self.max_rate)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        return {"rate": float(rng.uniform(self.min_rate, self.max_rate))}

    def apply(self, y: np.ndarray, rate: float) -> np.ndarray:
        import librosa  # deferred, as in waveform.PitchShift: only this transform needs it

        n = y.shape[0]
        if rate == 1.0 or n < self.n_fft:
            return y
        stretched = librosa.effects.time_stretch(y, rate=rate, n_fft=self.n_fft, hop_length=self.hop_length)
        out = np.zeros(n, np.float32)
        out[: min(n, stretched.shape[0])] = stretched[:n]
        return out
