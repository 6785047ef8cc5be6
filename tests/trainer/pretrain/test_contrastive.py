"""NT-Xent and the pair accuracy against a loop over the batch written here, and on pairs whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.pretrain import contrastive


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def reference_nt_xent(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Per pair: the mean of -log softmax over the partner, a's row against every b and b's column against every a."""
    n = len(a)
    out = []
    for i in range(n):
        row = [float(a[i] @ b[j]) / t for j in range(n)]
        col = [float(a[j] @ b[i]) / t for j in range(n)]
        lse_row = math.log(sum(math.exp(v) for v in row))
        lse_col = math.log(sum(math.exp(v) for v in col))
        out.append(((lse_row - row[i]) + (lse_col - col[i])) / 2)
    return np.array(out)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_equals_the_softmax_over_the_batch_written_as_a_loop(temperature):
    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=(6, 5))), unit(rng.normal(size=(6, 5)))
    got = np.asarray(contrastive.nt_xent(a, b, temperature))
    np.testing.assert_allclose(got, reference_nt_xent(a, b, temperature), rtol=1e-5, atol=1e-5)


def test_partners_that_match_cost_little_and_swapped_partners_cost_much():
    rng = np.random.default_rng(1)
    a = unit(rng.normal(size=(8, 16)))
    matched = float(np.mean(contrastive.nt_xent(a, a, 0.1)))
    swapped = float(np.mean(contrastive.nt_xent(a, a[::-1], 0.1)))
    assert matched < 0.5
    assert swapped > matched + 3.0
    # With every embedding the same the partner cannot be told apart: log B exactly.
    same = np.tile(a[:1], (8, 1))
    np.testing.assert_allclose(np.asarray(contrastive.nt_xent(same, same, 0.1)), np.log(8), rtol=1e-5)


def test_the_loss_is_symmetric_in_the_two_views():
    rng = np.random.default_rng(2)
    a, b = unit(rng.normal(size=(5, 4))), unit(rng.normal(size=(5, 4)))
    np.testing.assert_allclose(np.asarray(contrastive.nt_xent(a, b, 0.2)), np.asarray(contrastive.nt_xent(b, a, 0.2)),
                               rtol=1e-6)


def test_the_keras_loss_splits_the_pair_output_and_ignores_y_true():
    rng = np.random.default_rng(3)
    a, b = unit(rng.normal(size=(4, 3))), unit(rng.normal(size=(4, 3)))
    loss = contrastive.PairContrastiveLoss(temperature=0.2)
    value = float(loss(np.full(4, 7.0, np.float32), np.concatenate([a, b], axis=1)))
    assert value == pytest.approx(float(np.mean(reference_nt_xent(a, b, 0.2))), rel=1e-5)


def test_pair_accuracy_counts_the_views_whose_nearest_other_view_is_their_partner():
    a = np.eye(4, dtype=np.float32)
    b = a[[0, 1, 3, 2]]  # pairs 2 and 3 swapped: their nearest b is the other's
    got = np.asarray(contrastive.pair_accuracy(None, np.concatenate([a, b], axis=1)))
    np.testing.assert_array_equal(got, [1, 1, 0, 0])
