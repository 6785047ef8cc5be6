"""Slice arithmetic: where the training window around an event sits inside its recording.

The seed notebook's rule (its DataGenerator): centre the window on the event's midpoint, rounded to
a sample; move it right if it starts before 0, then left if it ends past the recording. A recording
shorter than the window is kept whole (start 0, fewer samples): the example's `num_samples` says so
and the trainer pads it.

    start, end = slice_bounds(t_min=12.3, t_max=13.1, sample_rate=48000, slice_samples=480000,
                              num_samples=2880000)
"""
from __future__ import annotations


def slice_bounds(t_min: float, t_max: float, sample_rate: int, slice_samples: int,
                 num_samples: int) -> tuple[int, int]:
    """[start, end) sample indices of the window around event [t_min, t_max] seconds.

    end - start == min(slice_samples, num_samples); 0 <= start <= end <= num_samples.
    """
    centre = round((t_min + t_max) * sample_rate / 2)  # round half to even, as np.round in the seed
    start = min(max(centre - slice_samples // 2, 0), num_samples - slice_samples)
    start = max(start, 0)  # recording shorter than the window: keep it whole
    return start, min(start + slice_samples, num_samples)


def overlaps(t_min: float, t_max: float, start_s: float, end_s: float) -> bool:
    """True when box [t_min, t_max] shares a positive-length stretch with the window [start_s, end_s)."""
    return t_min < end_s and t_max > start_s
