"""Tests of trainer.evaluation.lwlrap against sklearn's label_ranking_average_precision_score.

sklearn with sample_weight = positives per row is LWLRAP (rows without positives get weight 0).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import common
from tests.helpers.common import sklearn_lwlrap
from trainer.evaluation.lwlrap import (
    LWLRAP,
    LwlrapError,
    lwlrap,
    per_class_lwlrap,
    recording_lwlrap,
    recording_max,
)

C = 24


_sklearn_lwlrap = sklearn_lwlrap


def _case(kind: str, rows: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random((rows, C))
    if kind == "single":
        truth = np.eye(C)[rng.integers(C, size=rows)]
    else:
        truth = (rng.random((rows, C)) < 0.15).astype(float)
        truth[: rows // 6] = 0.0  # rows without positives
        truth[rows // 6] = 1.0  # a row where every label is positive
    scores += truth * rng.random((rows, C)) * 0.5  # informative, not perfect
    if kind == "ties":
        scores = np.round(scores, 1)  # ~15 distinct values over 24 labels: many ties
        scores[1] = 0.5  # a whole row tied
    return truth, scores


@pytest.mark.parametrize("kind", ["single", "multi", "ties"])
def test_numpy_lwlrap_equals_sklearn(kind) -> None:
    truth, scores = _case(kind)
    assert lwlrap(truth, scores) == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-12)


def test_per_class_on_a_hand_computed_example() -> None:
    truth = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.8, 0.1], [0.3, 0.2, 0.1], [0.5, 0.5, 0.5]])
    # Row 0: label 0 ranked 1st (1/1), label 2 ranked 3rd with 2 positives at or above it (2/3).
    # Row 1: label 1 ranked 2nd (1/2). Row 2 has no positives and is left out.
    per_class, weight = per_class_lwlrap(truth, scores)
    np.testing.assert_allclose(per_class, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(weight, [1 / 3, 1 / 3, 1 / 3])
    assert lwlrap(truth, scores) == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)
    # Ties: a negative tied with the positive counts as ranked above it -> precision 1/2, not 1.
    assert lwlrap([[1, 0]], [[0.5, 0.5]]) == pytest.approx(0.5)


def test_numpy_errors() -> None:
    with pytest.raises(LwlrapError):
        lwlrap(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(LwlrapError, match="no positive"):
        lwlrap(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(LwlrapError, match="NaN"):
        lwlrap(np.eye(2), [[np.nan, 0.0], [0.0, 1.0]])


def test_recording_level_lwlrap_on_a_hand_built_case() -> None:
    """Slices of 4 recordings -> max per recording (done by hand below) -> sklearn's LWLRAP."""
    ids = np.array(["b", "a", "a", "c", "b", "a", "d"])
    truth = np.array([[0, 1, 0, 0],   # b: tp slice of species 1
                      [1, 0, 0, 0],   # a: tp slice of species 0
                      [0, 0, 0, 0],   # a: background slice
                      [0, 0, 0, 0],   # c: fp slice only: no positive, left out
                      [0, 0, 0, 0],   # b: fp slice
                      [0, 0, 1, 0],   # a: tp slice of species 2
                      [0, 0, 0, 1]])  # d: tp slice of species 3
    scores = np.array([[0.1, 0.6, 0.2, 0.3],
                       [0.7, 0.1, 0.2, 0.1],
                       [0.2, 0.9, 0.1, 0.4],
                       [0.5, 0.5, 0.5, 0.5],
                       [0.8, 0.3, 0.1, 0.2],
                       [0.1, 0.2, 0.3, 0.8],
                       [0.4, 0.4, 0.1, 0.4]])
    # Max over each recording's slices, written out by hand (recordings in sorted order a, b, c, d).
    rec_truth = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    rec_scores = np.array([[0.7, 0.9, 0.3, 0.8],   # a: max of rows 1, 2, 5
                           [0.8, 0.6, 0.2, 0.3],   # b: max of rows 0, 4
                           [0.5, 0.5, 0.5, 0.5],   # c
                           [0.4, 0.4, 0.1, 0.4]])  # d: a tie of three at the top
    got_ids, got_truth, got_scores = recording_max(ids, truth, scores)
    assert list(got_ids) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(got_truth, rec_truth)
    np.testing.assert_array_equal(got_scores, rec_scores)
    expected = _sklearn_lwlrap(rec_truth, rec_scores)
    # By hand: a: species 0 ranked 3rd with 1 positive at/above (1/3), species 2 ranked 4th (2/4);
    # b: species 1 ranked 2nd (1/2); d: species 3 tied with two others (1/3). Mean over 4 positives.
    assert expected == pytest.approx((1 / 3 + 2 / 4 + 1 / 2 + 1 / 3) / 4)
    assert recording_lwlrap(ids, truth, scores) == pytest.approx(expected, abs=1e-12)
    # Differs from the slice-level value, so the aggregation is what is being tested.
    assert abs(lwlrap(truth, scores) - expected) > 0.05


def test_streaming_metric_over_batches_equals_one_shot() -> None:
    truth, scores = _case("ties", rows=90, seed=1)
    metric = LWLRAP(num_classes=C)
    for start, stop in [(0, 7), (7, 20), (20, 21), (21, 64), (64, 90)]:
        metric.update_state(truth[start:stop], scores[start:stop])
    expected = _sklearn_lwlrap(truth, scores)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    # The biased alternative (mean of per-batch values) differs, so the test can tell them apart.
    batch_means = [_sklearn_lwlrap(truth[a:b], scores[a:b]) for a, b in [(0, 45), (45, 90)]]
    assert abs(np.mean(batch_means) - expected) > 1e-4
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_streaming_metric_reads_only_the_labels_half_of_packed_targets() -> None:
    truth, scores = _case("multi", rows=40, seed=6)
    weights = np.random.default_rng(6).choice([0.0, 1.0], size=truth.shape)  # must not matter
    metric = LWLRAP(num_classes=C)
    metric.update_state(np.concatenate([truth, weights], axis=1), scores)
    assert float(metric.result()) == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_metric_accepts_mixed_precision_scores(dtype) -> None:
    truth, scores = _case("multi", seed=2)
    low = tf.cast(tf.constant(scores, tf.float32), dtype)
    metric = LWLRAP(num_classes=C)
    metric.update_state(tf.cast(tf.constant(truth), dtype), low)
    rounded = tf.cast(low, tf.float32).numpy()  # the scores the metric actually saw (with their new ties)
    assert float(metric.result()) == pytest.approx(_sklearn_lwlrap(truth, rounded), abs=1e-6)


def test_sample_weight_counts_rows() -> None:
    truth, scores = _case("multi", rows=30, seed=3)
    weights = np.where(np.arange(30) % 3 == 0, 2.0, 1.0)
    metric = LWLRAP(num_classes=C)
    metric.update_state(truth, scores, sample_weight=weights)
    repeat = np.repeat(np.arange(30), weights.astype(int))
    assert float(metric.result()) == pytest.approx(_sklearn_lwlrap(truth[repeat], scores[repeat]), abs=1e-6)


def test_metric_in_compiled_model_evaluate(tmp_path) -> None:
    truth, scores = _case("ties", rows=100, seed=4)
    model = keras.Sequential([keras.Input((C,)), keras.layers.Identity()])
    model.compile(loss="binary_crossentropy", metrics=[LWLRAP(num_classes=C)])
    result = model.evaluate(scores, truth, batch_size=16, verbose=0, return_dict=True)
    assert result["lwlrap"] == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-6)
    model.save(tmp_path / "m.keras")  # registered: a model compiled with it saves and loads
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.evaluate(scores, truth, batch_size=32, verbose=0, return_dict=True)["lwlrap"] == pytest.approx(
        result["lwlrap"], abs=1e-6
    )


_DISTRIBUTED = textwrap.dedent(
    """
    import sys, numpy as np, tensorflow as tf, keras
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainer.evaluation.lwlrap import LWLRAP
    truth, scores = np.load(sys.argv[1])["truth"], np.load(sys.argv[1])["scores"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((truth.shape[1],)), keras.layers.Identity()])
        model.compile(loss="binary_crossentropy", metrics=[LWLRAP(num_classes=truth.shape[1])])
    result = model.evaluate(scores, truth, batch_size=20, verbose=0, return_dict=True)
    print(strategy.num_replicas_in_sync, result["lwlrap"])
    """
)


def test_metric_under_mirrored_strategy(tmp_path) -> None:
    """Two replicas each see half of every batch; the summed variables give the one-shot value."""
    truth, scores = _case("multi", rows=80, seed=5)
    np.savez(tmp_path / "data.npz", truth=truth, scores=scores)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED, str(tmp_path / "data.npz")],
        capture_output=True, text=True, env=env, timeout=300, check=True, cwd=common.REPO,
    )
    replicas, value = done.stdout.split()[-2:]
    assert int(replicas) == 2
    assert float(value) == pytest.approx(_sklearn_lwlrap(truth, scores), abs=1e-6)
