"""benchmarks/embedding_probe: the windows and labels of the probe's protocol (the BirdNET model itself is never
needed by tests: it is a yardstick the user downloads)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import embedding_probe as probe


def test_window_starts_cover_the_grid_and_centre_a_window_on_each_box():
    starts = probe.window_starts(10.0, 3.0, centres=[5.0, 0.5, 9.9])
    # grid 0, 3, 6 (9 would run past 10 s); 5.0 -> 3.5; 0.5 and 9.9 clip to 0 and 7
    assert starts.tolist() == [0.0, 3.0, 3.5, 6.0, 7.0]


def test_a_window_is_positive_when_it_holds_half_a_box():
    boxes = pd.DataFrame({"species_id": [2, 4], "t_min": [2.0, 10.0], "t_max": [3.0, 20.0]})
    labels = probe.window_labels(np.array([0.0, 1.4, 1.6, 2.6, 12.0]), boxes, num_classes=5)
    # box 2..3 s: windows 0-3 and 1.4-4.4 and 1.6-4.6 hold all of it, 2.6-5.6 holds 0.4 s of 1 s (< half)
    assert labels[:, 2].tolist() == [1, 1, 1, 0, 0]
    # box 10..20 s, longer than a window: half a window (1.5 s) inside is enough
    assert labels[:, 4].tolist() == [0, 0, 0, 0, 1]
    assert labels[:, [0, 1, 3]].sum() == 0


def test_cut_windows_pads_past_the_end():
    audio = np.arange(probe.SAMPLE_RATE * 4, dtype=np.float32)
    windows = probe.cut_windows(audio, np.array([0.0, 2.0]))
    n = int(probe.SAMPLE_RATE * probe.WINDOW_SECONDS)
    assert windows.shape == (2, n) and windows[0, -1] == n - 1
    assert windows[1, 0] == 2 * probe.SAMPLE_RATE and windows[1, probe.SAMPLE_RATE * 2] == 0.0
