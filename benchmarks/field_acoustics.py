"""Field acoustics for the realistic benchmark (benchmarks.realistic_data): rain, wind and engine noise,
a call's propagation (reverb and distance low-pass), and the gain that puts a call at a given SNR.

    noise = rain(n, 48000, rng) + wind(n, 48000, rng)
    wet = propagate(call, f_max, 48000, rng)                         # what reaches the recorder
    gain = gain_for_snr(wet, noise, 48000, f_min, f_max, snr_db=-5)  # SNR within the call's band
"""
from __future__ import annotations

import colorednoise
import numpy as np
from scipy import signal

NOISES = {}  # filled below: {"rain": rain, "wind": wind, "engine": engine}


def _smooth_envelope(n: int, rng: np.random.Generator, sample_rate: int, hz: float) -> np.ndarray:
    """A positive slowly varying envelope (mean 1) that changes about every 1/hz seconds."""
    knots = max(2, int(n / sample_rate * hz) + 2)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, knots), rng.lognormal(0.0, 0.6, knots))
    return env / env.mean()


def rain(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Drops (short decaying clicks at 20-200 a second) over a high-passed hiss, RMS about 1."""
    drops = np.zeros(n)
    count = int(rng.uniform(20, 200) * n / sample_rate)
    drops[rng.integers(0, n, count)] = rng.lognormal(0.0, 0.8, count)
    k = int(0.004 * sample_rate)
    kernel = rng.standard_normal(k) * np.exp(-np.arange(k) / (0.0008 * sample_rate))
    y = signal.fftconvolve(drops, kernel)[:n] + 0.3 * rng.standard_normal(n) * drops.std()
    y = signal.sosfilt(signal.butter(2, 800, "highpass", fs=sample_rate, output="sos"), y)
    return y / (y.std() + 1e-12)


def wind(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Brown noise low-passed under a few hundred Hz, in gusts; RMS about 1."""
    y = colorednoise.powerlaw_psd_gaussian(2.0, n, random_state=rng)
    cutoff = float(rng.uniform(150, 600))
    y = signal.sosfilt(signal.butter(2, cutoff, "lowpass", fs=sample_rate, output="sos"), y)
    y *= _smooth_envelope(n, rng, sample_rate, 0.3)
    return y / (y.std() + 1e-12)


def engine(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A drifting harmonic drone (25-90 Hz fundamental, harmonics to ~2 kHz) that passes by; RMS about 1."""
    t = np.arange(n) / sample_rate
    f0 = float(rng.uniform(25, 90)) * (1 + 0.05 * np.sin(2 * np.pi * t / rng.uniform(5, 20)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    y = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, int(2000 / f0.max()) + 1))
    y = y + 0.5 * signal.sosfilt(signal.butter(2, 1000, "lowpass", fs=sample_rate, output="sos"),
                                 rng.standard_normal(n))
    centre, width = rng.uniform(0, t[-1] + 1e-9), rng.uniform(5, 30)
    y *= 0.05 + np.exp(-0.5 * ((t - centre) / width) ** 2)  # a vehicle or plane passing the recorder
    return y / (y.std() + 1e-12)


def band_power(x: np.ndarray, sample_rate: int, f_min: float, f_max: float) -> float:
    """Mean power of x within [f_min, f_max] Hz (one-sided spectrum, Parseval)."""
    spec = np.fft.rfft(np.asarray(x, np.float64))
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    sel = (freqs >= f_min) & (freqs <= f_max)
    return float(2.0 * np.sum(np.abs(spec[sel]) ** 2) / len(x) ** 2)


def gain_for_snr(call: np.ndarray, noise: np.ndarray, sample_rate: int, f_min: float, f_max: float,
                 snr_db: float) -> float:
    """The gain that puts `call` snr_db above `noise` (the same stretch of the noise bed) in the band.

    In the band rather than broadband: pink noise and wind put most of their power far below most
    calls, so a broadband SNR would say little about how hard a call is to hear.
    """
    p_call = band_power(call, sample_rate, f_min, f_max)
    p_noise = band_power(noise, sample_rate, f_min, f_max)
    return float(np.sqrt(p_noise * 10 ** (snr_db / 10) / max(p_call, 1e-20)))


def propagate(call: np.ndarray, f_max: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Reverb (decaying noise tail, RT60 0.1-0.7 s) and a distance low-pass that tilts the band down.

    The result is longer than `call` by the reverb tail; the box still covers the dry call only.
    """
    rt60 = float(rng.uniform(0.1, 0.7))
    k = int(rt60 * sample_rate)
    ir = rng.standard_normal(k) * np.exp(-6.9 * np.arange(k) / k)
    wet = signal.fftconvolve(call, ir / np.sqrt(np.sum(ir ** 2)))
    y = np.concatenate([call, np.zeros(k - 1)]) + float(rng.uniform(0.1, 0.6)) * wet
    cutoff = min(float(rng.uniform(0.7, 3.0)) * f_max, 0.45 * sample_rate)
    y = signal.sosfilt(signal.butter(1, cutoff, "lowpass", fs=sample_rate, output="sos"), y)
    return y.astype(np.float32)


NOISES.update({"rain": rain, "wind": wind, "engine": engine})
