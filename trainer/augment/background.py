"""Background mixing (numpy): a training window plus a background window of another recording at a random SNR.

A call in the field is heard over whatever else the forest is doing; the training slices only hold
the backgrounds of the few recordings they come from. Mixing each window with a background slice of
another training recording (kind "background": a stretch without tp box) shows the model the same
call over other backgrounds. The targets stay as they are: the background window adds no box, and
what it may hold unlabelled is what the partial labels say nothing about anyway (trainer.data.targets).

    from trainer.augment.background import BackgroundMix, mix_at_snr
    mixed = mix_at_snr(y, background, snr_db=5.0)          # float32 [n], [n] -> [n]
    mixed = BackgroundMix(p=0.5, min_snr_db=0, max_snr_db=10)(y, background, np.random.default_rng(1))

The SNR is a ratio of mean powers over the whole window: the window as cut (its call and its own
background together) against the added background. A silent side (e.g. a zero background, which
the input pipeline passes when the drawn background comes from the window's own recording) leaves
the window as it is.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from trainer.augment.waveform import AugmentError, check_probability, check_range

_SILENT_POWER = 1e-12  # mean power below this (about -120 dBFS) counts as silence


def mix_at_snr(y: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """y + g * background with g such that power(y) / power(g * background) = 10^(snr_db / 10).

    y, background: float32 [n] each (same length). Returns float32 [n]; y unchanged (a copy) when
    either side is silent, since no gain gives such a mixture the asked-for SNR.
    """
    y = np.asarray(y, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32)
    if y.shape != background.shape:
        raise AugmentError(f"background window {background.shape} must match the window {y.shape}")
    signal_power = float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
    noise_power = float(np.mean(np.square(background, dtype=np.float64))) if y.size else 0.0
    if signal_power < _SILENT_POWER or noise_power < _SILENT_POWER:
        return y.copy()
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (y + np.float32(gain) * background).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class BackgroundMix:
    """With probability p, mixes a background window in at an SNR drawn uniformly from [min_snr_db, max_snr_db].

    Draws from `rng` only when p > 0 (two: whether, then the SNR, both drawn even when not mixing),
    so that turning the mix off leaves every later draw of the chain as it was.
    """

    p: float = 0.5
    min_snr_db: float = 0.0
    max_snr_db: float = 10.0

    def __post_init__(self) -> None:
        check_probability("BackgroundMix.p", self.p)
        check_range("BackgroundMix SNR (dB)", self.min_snr_db, self.max_snr_db)

    def __call__(self, y: np.ndarray, background: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        if self.p <= 0.0:
            return y
        mixing = rng.random() < self.p
        snr_db = float(rng.uniform(self.min_snr_db, self.max_snr_db))
        if not mixing or background is None:
            return y
        return mix_at_snr(y, background, snr_db)
