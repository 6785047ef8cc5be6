"""Sliding-window arithmetic for inference over whole recordings (pure numpy).

A recording of `n` samples is cut into windows of the training window length `w` every `stride`
samples. The last window always ends at the recording's end, so every sample is covered even when
`n - w` is not a multiple of the stride (the last two windows then overlap more than the others); a
recording shorter than one window becomes a single window, zero-padded at the end (the same padding
the trainer applies to short slices).

    from core import windows
    starts = windows.window_starts(num_samples=60 * 48000, window=10 * 48000, stride=5 * 48000)
    batch = windows.cut_windows(waveform, window=480000, stride=240000)   # [num_windows, window]
    for batch, owner in windows.window_batches(waveforms, 480000, 240000, batch_size=16): ...
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


class WindowError(ValueError):
    """Window parameters that cannot cut a recording (non-positive window or stride, stride > window)."""


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Duration in seconds -> whole samples (rounded, so 10.0 s at 48 kHz is exactly 480000)."""
    return int(round(seconds * sample_rate))


def default_stride(window: int) -> int:
    """Half a window (at least one sample): each moment is seen by two windows away from the edges."""
    return max(1, window // 2)


def _check(window: int, stride: int) -> None:
    if window <= 0:
        raise WindowError(f"window must be > 0 samples, got {window}")
    if stride <= 0:
        raise WindowError(f"stride must be > 0 samples, got {stride}")
    if stride > window:
        # A stride longer than the window would skip audio between windows.
        raise WindowError(f"stride ({stride} samples) must not exceed the window ({window} samples)")


def window_starts(num_samples: int, window: int, stride: int) -> np.ndarray:
    """First sample of each window: int64 [num_windows], increasing, the last equal to max(0, n - w).

    Starts are 0, stride, 2*stride, ... while the window fits; when the last regular window ends
    before the recording does, one more window is added that ends exactly at the end.
    """
    _check(window, stride)
    if num_samples < 0:
        raise WindowError(f"num_samples must be >= 0, got {num_samples}")
    last = max(0, num_samples - window)
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def cut_windows(waveform: np.ndarray, window: int, stride: int) -> np.ndarray:
    """float32 [n] -> float32 [num_windows, window]; zero-padded to one window when n < window."""
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise WindowError(f"expected a 1-D waveform, got shape {y.shape}")
    return windows_at(y, window_starts(y.shape[0], window, stride), window)


def windows_at(waveform: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """[n] -> [len(starts), window]: the windows beginning at `starts` (some of window_starts' output, e.g. one
    batch of it), the waveform zero-padded to one window when n < window."""
    y = waveform if waveform.shape[0] >= window else np.pad(waveform, (0, window - waveform.shape[0]))
    # View [n - window + 1, window] of every possible window; indexing by `starts` copies out
    # [len(starts), window] without materialising an index array as large as the output.
    return np.lib.stride_tricks.sliding_window_view(y, window)[starts]


def window_batches(
    waveforms: Iterable[np.ndarray], window: int, stride: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of consecutive recordings packed into batches of `batch_size` (the last may be smaller).

    Yields (float32 [<=batch_size, window], owner int64 [<=batch_size]), owner being the index of
    the recording in `waveforms` each window comes from. Packing across recordings keeps model calls
    full even when recordings are short (one window each).
    """
    if batch_size < 1:
        raise WindowError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    size = 0
    for index, waveform in enumerate(waveforms):
        cut = cut_windows(waveform, window, stride)  # [num_windows, window]
        pending.append(cut)
        owners.append(np.full(len(cut), index, dtype=np.int64))
        size += len(cut)
        if size >= batch_size:
            stacked, owner = np.concatenate(pending), np.concatenate(owners)
            full = size - size % batch_size
            for a in range(0, full, batch_size):
                yield stacked[a : a + batch_size], owner[a : a + batch_size]
            pending, owners, size = [stacked[full:]], [owner[full:]], size - full
    if size:
        yield np.concatenate(pending), np.concatenate(owners)
