"""Sliding-window arithmetic: coverage, last window at the end, short recordings, exact multiples."""
from __future__ import annotations

import numpy as np
import pytest

from core import windows


def _covered(num_samples: int, window: int, starts: np.ndarray) -> np.ndarray:
    mask = np.zeros(num_samples, dtype=bool)
    for s in starts:
        mask[s : s + window] = True
    return mask


@pytest.mark.parametrize(
    "num_samples, window, stride",
    [(100, 10, 5), (103, 10, 5), (101, 10, 3), (10, 10, 5), (11, 10, 10), (57, 8, 1), (1000, 999, 500)],
)
def test_every_sample_covered_and_last_window_ends_at_end(num_samples, window, stride):
    starts = windows.window_starts(num_samples, window, stride)
    assert _covered(num_samples, window, starts).all()
    assert starts[-1] + window == num_samples
    assert starts[0] == 0
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= stride)
    # All but the last step are exactly the stride.
    assert np.all(np.diff(starts)[:-1] == stride)


def test_exact_multiple_has_no_extra_window():
    # 60 s at 10 s windows, 5 s stride: starts 0, 5, ..., 50 -> 11 windows, none added.
    starts = windows.window_starts(60, 10, 5)
    assert starts.tolist() == list(range(0, 51, 5))


def test_stride_equal_to_window_tiles_and_adds_a_final_overlapping_window():
    assert windows.window_starts(30, 10, 10).tolist() == [0, 10, 20]
    assert windows.window_starts(35, 10, 10).tolist() == [0, 10, 20, 25]


def test_non_multiple_adds_one_window_ending_at_the_end():
    assert windows.window_starts(23, 10, 5).tolist() == [0, 5, 10, 13]


def test_short_recording_is_one_zero_padded_window():
    y = np.arange(1, 8, dtype=np.float32)  # 7 samples, window 10
    assert windows.window_starts(7, 10, 5).tolist() == [0]
    cut = windows.cut_windows(y, 10, 5)
    assert cut.shape == (1, 10)
    np.testing.assert_array_equal(cut[0], [1, 2, 3, 4, 5, 6, 7, 0, 0, 0])


def test_cut_windows_match_slices_of_the_recording():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(103).astype(np.float32)
    cut = windows.cut_windows(y, 10, 5)
    starts = windows.window_starts(103, 10, 5)
    assert cut.shape == (len(starts), 10) and cut.dtype == np.float32
    for row, s in zip(cut, starts):
        np.testing.assert_array_equal(row, y[s : s + 10])
    cut[0, 0] = 1e6  # a copy, not a view of the recording
    assert y[0] != 1e6


def test_default_stride_is_half_a_window_and_seconds_round():
    assert windows.default_stride(480000) == 240000
    assert windows.default_stride(1) == 1
    assert windows.seconds_to_samples(10.0, 48000) == 480000
    assert windows.seconds_to_samples(0.1, 48000) == 4800


@pytest.mark.parametrize("window, stride", [(0, 1), (10, 0), (10, 11), (-5, 1)])
def test_bad_parameters_raise(window, stride):
    with pytest.raises(windows.WindowError):
        windows.window_starts(100, window, stride)


def test_two_dimensional_input_rejected():
    with pytest.raises(windows.WindowError):
        windows.cut_windows(np.zeros((2, 10)), 5, 5)


def test_window_batches_pack_windows_of_consecutive_recordings():
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (23, 7, 40, 10)]
    # Windows per recording at window 10, stride 5: 23 -> 4, 7 -> 1 (padded), 40 -> 7, 10 -> 1; 13 in all.
    batches = list(windows.window_batches(iter(waves), 10, 5, batch_size=4))
    assert [len(b) for b, _ in batches] == [4, 4, 4, 1]
    got = np.concatenate([b for b, _ in batches])
    owner = np.concatenate([o for _, o in batches])
    assert owner.tolist() == [0] * 4 + [1] + [2] * 7 + [3]
    expected = np.concatenate([windows.cut_windows(w, 10, 5) for w in waves])
    np.testing.assert_array_equal(got, expected)


def test_window_batches_of_nothing_and_bad_batch_size():
    assert list(windows.window_batches(iter([]), 10, 5, batch_size=4)) == []
    with pytest.raises(windows.WindowError):
        list(windows.window_batches(iter([np.zeros(10)]), 10, 5, batch_size=0))
