"""Slice arithmetic: where a training window sits inside its recording.

Around a box (tp and fp slices), the seed notebook's rule (its DataGenerator): centre the window on
the box's midpoint, rounded to a sample; move it right if it starts before 0, then left if it ends
past the recording. A recording shorter than the window is kept whole (start 0, fewer samples): the
example's `num_samples` says so and the trainer pads it.

Background slices: windows overlapping no tp box, drawn from the starts that are free
(`free_starts`) by a generator seeded from (fold seed, recording id) (`background_rng`), so the same
data and seed always give the same slices, whichever worker draws them.

    start, end = slice_bounds(t_min=12.3, t_max=13.1, sample_rate=48000, slice_samples=480000,
                              num_samples=2880000)
    free = free_starts(2880000, 480000, 48000, [(12.3, 13.1)])       # [(0, 110400), (628801, 2400001)]
    starts = draw_starts(free, 2, background_rng(27, "00ad36516"))    # 2 distinct starts, sorted

Training crops (in samples, within a slice): `centred_start` (validation, baseline) and `crop_range` (the
random crops of training, which keep `min_overlap` of the slice's event).
"""
from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np


def slice_bounds(t_min: float, t_max: float, sample_rate: int, slice_samples: int,
                 num_samples: int) -> tuple[int, int]:
    """[start, end) sample indices of the window around event [t_min, t_max] seconds.

    end - start == min(slice_samples, num_samples); 0 <= start <= end <= num_samples.
    """
    centre = round((t_min + t_max) * sample_rate / 2)  # round half to even, as np.round in the seed
    start = min(max(centre - slice_samples // 2, 0), num_samples - slice_samples)
    start = max(start, 0)  # recording shorter than the window: keep it whole
    return start, min(start + slice_samples, num_samples)


def clip_event(start: float, end: float, num_samples: int) -> tuple[float, float]:
    """An event's [start, end] in samples clipped to a slice of `num_samples` (boxes may reach past its edges)."""
    start = min(max(start, 0.0), float(num_samples))
    return start, min(max(end, start), float(num_samples))


def centred_start(num_samples: int, window: int, event_start: float, event_end: float) -> int:
    """First sample of the `window` centred on event [event_start, event_end] (samples, clipped first) and
    clamped inside the slice: slice_bounds' rule with times in samples (a rate of 1). Validation crops,
    the baseline's windows and the job's slices all cut by it."""
    start, end = clip_event(event_start, event_end, num_samples)
    return slice_bounds(start, end, 1, window, num_samples)[0]


def crop_range(num_samples: int, window: int, event_start: float, event_end: float,
               min_overlap: float) -> tuple[int, int]:
    """[lo, hi] (both inclusive) of the starts of a `window` that holds at least `min_overlap` of the event
    (of the window, when the event is longer): the training crops draw uniformly from it. A slice
    shorter than the window gives (0, 0).

    Window [o, o + w) shares min(end, o + w) - max(start, o) with the event; that is >= need for
    start + need - w <= o <= end - need (need <= both lengths, so the range is never empty).
    """
    start, end = clip_event(event_start, event_end, num_samples)
    last = max(float(num_samples) - window, 0.0)
    need = min_overlap * min(end - start, float(window))
    lo = min(max(math.ceil(start + need - window), 0.0), last)
    hi = min(max(math.floor(end - need), lo), last)
    return int(lo), int(hi)


def overlaps(t_min: float, t_max: float, start_s: float, end_s: float) -> bool:
    """True when box [t_min, t_max] shares a positive-length stretch with the window [start_s, end_s)."""
    return t_min < end_s and t_max > start_s


def free_starts(num_samples: int, slice_samples: int, sample_rate: int,
                boxes: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Sorted disjoint [lo, hi) ranges of window starts whose window overlaps none of `boxes` (t_min, t_max s).

    Windows are min(slice_samples, num_samples) long and lie inside the recording. A window
    [s, s + L) overlaps a box when s lies in (t_min * sr - L, t_max * sr); the blocked range is
    widened by one sample on each side so that float rounding can never let a free window touch
    a box (`overlaps` in seconds is what the examples' labels use).
    """
    length = min(slice_samples, num_samples)
    last = num_samples - length  # the last legal start
    blocked = sorted((math.floor(t0 * sample_rate) - length, math.ceil(t1 * sample_rate)) for t0, t1 in boxes)
    free, lo = [], 0  # lo: the first start not yet known to be blocked
    for a, b in blocked:  # starts a..b (inclusive) are blocked
        if a > last:
            break
        if a > lo:
            free.append((lo, a))
        lo = max(lo, b + 1)
    if lo <= last:
        free.append((lo, last + 1))
    return free


def background_rng(seed: int, recording_id: str) -> np.random.Generator:
    """The generator of one recording's background slices: a function of (seed, recording id) only.

    zlib.crc32 rather than hash(): Python salts str hashes per process, and workers are processes.
    """
    return np.random.default_rng([seed % 2**32, zlib.crc32(recording_id.encode("utf-8"))])


def draw_starts(free: Sequence[tuple[int, int]], count: int, rng: np.random.Generator) -> list[int]:
    """Up to `count` distinct starts drawn uniformly from the `free` ranges, sorted.

    Fewer than `count` only when the ranges hold fewer starts (then all of them).
    """
    sizes = np.array([hi - lo for lo, hi in free], dtype=np.int64)
    total = int(sizes.sum())
    picks = np.sort(rng.choice(total, size=min(count, total), replace=False)) if total else np.zeros(0, np.int64)
    ends = np.cumsum(sizes)  # picks below ends[i] (and not below ends[i-1]) fall in free[i]
    starts = []
    for p in picks.tolist():
        i = int(np.searchsorted(ends, p, side="right"))
        starts.append(free[i][0] + p - (int(ends[i - 1]) if i else 0))
    return starts
