"""Pitch shift as a change of the mel filter bank (the "mel" pitch-shift method of the augmentation chain).

A pitch shift by n semitones moves the power at frequency f to r*f, r = 2^(n/12). The mel is M @ P, so
mel(shifted) = M @ (W_r @ P) = (M @ W_r) @ P with W_r the linear operator that stretches the power
spectrum by r (`spectrum_warp`). The banks M_r for every integer n in [-max_steps, max_steps] are
one constant [2*max_steps+1, n_mels, bins] (`warped_banks`); trainer.features.mel picks one per
example by index inside the TF front end, trainer.augment.chain draws the steps with the rest of
the chain. Plain numpy, no TensorFlow.

    banks = warped_banks(librosa.filters.mel(sr=48000, n_fft=2048), max_steps=3)  # [7, 128, 1025]
"""
from __future__ import annotations

import numpy as np


def spectrum_warp(num_bins: int, ratio: float) -> np.ndarray:
    """Linear map of a power spectrum to the spectrum of the same sound pitch-shifted by `ratio`.

    Returns W float64 [num_bins, num_bins] with P_shifted = W @ P. Bin j of P is taken as constant
    power density over [j - 1/2, j + 1/2] (in bins); shifting maps density p(u) to p(x / r) / r
    (the 1/r keeps the energy), so output bin k receives the power of the source interval
    [(k - 1/2) / r, (k + 1/2) / r]: W[k, j] = length of its overlap with bin j. Each column sums
    to 1 (energy conserved) except where r * frequency passes Nyquist, whose power is dropped,
    and source intervals beyond Nyquist contribute nothing, as for a waveform pitch shift of
    band-limited audio. ratio 1 gives the identity.
    """
    if not ratio > 0:
        raise ValueError(f"pitch ratio must be > 0, got {ratio}")
    edges = np.arange(num_bins + 1) - 0.5  # bin j spans [edges[j], edges[j + 1]]
    src_lo, src_hi = edges[:-1, None] / ratio, edges[1:, None] / ratio  # [K, 1] source interval of bin k
    overlap = np.minimum(src_hi, edges[None, 1:]) - np.maximum(src_lo, edges[None, :-1])  # [K, J]
    return np.maximum(overlap, 0.0)


def warped_banks(plain: np.ndarray, max_steps: int) -> np.ndarray:
    """Mel banks of pitch shifts by -max_steps .. +max_steps semitones.

    plain: float [n_mels, F] filter bank over the STFT's F bins. Returns float32 [2 * max_steps + 1,
    n_mels, F] with banks[n + max_steps] = plain @ spectrum_warp(2^(n/12)) (exact for n = 0).
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_pitch_steps must be an int >= 0, got {max_steps!r}")
    plain = np.asarray(plain, np.float64)
    num_bins = plain.shape[1]
    return np.stack([
        plain @ spectrum_warp(num_bins, 2.0 ** (n / 12.0)) for n in range(-max_steps, max_steps + 1)
    ]).astype(np.float32)
