"""benchmarks/bench_export.py's arithmetic (never its timings): the real-time factor and the LWLRAP it reports."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_export
from core import manifest as shards_layout
from tests.helpers.common import sklearn_lwlrap
from trainer.inference import submission


def test_measure_reports_audio_seconds_and_the_max_over_windows():
    calls = []

    def score(wave: np.ndarray) -> np.ndarray:  # two "windows": the wave's first and last sample, 3 species
        calls.append(len(wave))
        return np.array([[wave[0]] * 3, [wave[-1]] * 3], np.float32)

    waves = [np.array([0.1, 0.5, 0.9], np.float32), np.array([0.7, 0.2], np.float32)]
    out = bench_export.measure(score, waves, sample_rate=2)
    assert calls == [2, 3, 2]  # one warm-up call on the first second (2 samples), then every recording
    np.testing.assert_allclose(out["scores"], [[0.9] * 3, [0.7] * 3])
    assert out["audio_s"] == 2.5 and out["real_time_factor"] > 0


def test_lwlrap_is_against_test_truth_without_recordings_lacking_a_positive(tiny_shards):
    truth = submission.read_score_table(f"{tiny_shards}/{shards_layout.TEST_TRUTH}")
    ids = truth[submission.ID_COLUMN].tolist()
    scores = np.random.default_rng(0).random((len(ids), truth.shape[1] - 1)).astype(np.float32)
    rows = truth.drop(columns=[submission.ID_COLUMN]).to_numpy()
    keep = rows.sum(axis=1) > 0
    assert keep.any()
    expected = sklearn_lwlrap(rows[keep], scores[keep])
    assert bench_export.score_lwlrap(tiny_shards, ids, scores) == pytest.approx(expected, abs=1e-4)
