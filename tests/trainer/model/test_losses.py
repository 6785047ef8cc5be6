"""trainer.model.losses: masked binary cross-entropy on packed targets [labels | weights], and the softmax loss.

Expected values come from Keras' own BinaryCrossentropy / CategoricalCrossentropy and from gradients
taken by TensorFlow, never from the code under test.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.model.losses import (
    LabelsCategoricalCrossentropy,
    MaskedBinaryCrossentropy,
    masked_bce,
)

C = 6


def _case(seed: int = 0, rows: int = 5):
    rng = np.random.default_rng(seed)
    labels = (rng.random((rows, C)) < 0.4).astype(np.float32)
    scores = rng.uniform(0.05, 0.95, (rows, C)).astype(np.float32)  # inside the clip range
    return labels, scores


def test_masked_score_gets_exactly_zero_gradient_and_known_ones_do_not():
    labels, scores = _case()
    weights = np.ones_like(labels)
    weights[0, 1] = weights[2, 4] = weights[3, :] = 0.0  # unknown labels
    y = tf.constant(np.concatenate([labels, weights], axis=1))
    p = tf.Variable(scores)
    with tf.GradientTape() as tape:
        loss = MaskedBinaryCrossentropy(num_classes=C)(y, p)
    grad = tape.gradient(loss, p).numpy()
    assert (grad[weights == 0.0] == 0.0).all()  # exactly, not approximately
    assert (np.abs(grad[weights == 1.0]) > 1e-4).all()
    # Changing a masked score changes nothing; changing a known one does.
    moved = scores.copy()
    moved[weights == 0.0] = 0.999
    assert float(MaskedBinaryCrossentropy(C)(y, moved)) == pytest.approx(float(loss), abs=1e-7)
    moved[0, 0] = 0.5 if scores[0, 0] != 0.5 else 0.6
    assert float(MaskedBinaryCrossentropy(C)(y, moved)) != pytest.approx(float(loss), abs=1e-6)


def test_all_weights_one_is_keras_binary_crossentropy():
    labels, scores = _case(1, rows=16)
    y = np.concatenate([labels, np.ones_like(labels)], axis=1)
    expected = float(keras.losses.BinaryCrossentropy()(labels, scores))
    assert float(MaskedBinaryCrossentropy(num_classes=C)(y, scores)) == pytest.approx(expected, rel=1e-6)


def test_masked_loss_is_the_bce_of_the_known_labels_scaled_by_their_share():
    """Per row: the mean over the C species of weight x BCE = (known / C) x Keras BCE over the known ones."""
    labels, scores = _case(2, rows=4)
    known = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0]], np.float32)
    y = np.concatenate([labels, known], axis=1)
    per_row = [known[i].sum() / C * float(keras.losses.BinaryCrossentropy()(labels[i][known[i] == 1][None],
                                                                              scores[i][known[i] == 1][None]))
               for i in range(len(labels))]
    assert float(MaskedBinaryCrossentropy(C)(y, scores)) == pytest.approx(np.mean(per_row), rel=1e-6)


def test_numpy_masked_bce_equals_the_keras_loss():
    labels, scores = _case(3, rows=40)
    rng = np.random.default_rng(4)
    weights = rng.choice([0.0, 0.3, 1.0], size=labels.shape).astype(np.float32)
    scores[0, 0], scores[1, 1] = 0.0, 1.0  # clipped the same way on both sides
    y = np.concatenate([labels, weights], axis=1)
    keras_value = float(MaskedBinaryCrossentropy(num_classes=C)(y, scores))
    assert masked_bce(y, scores, C) == pytest.approx(keras_value, rel=1e-5)
    assert np.isnan(masked_bce(np.zeros((0, 2 * C)), np.zeros((0, C)), C))


def test_softmax_loss_reads_only_the_labels_half():
    labels = np.eye(C, dtype=np.float32)[[2, 0, 5]]
    logits = np.random.default_rng(5).normal(size=(3, C)).astype(np.float32)
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = float(keras.losses.CategoricalCrossentropy()(labels, scores))
    for weights in (np.ones_like(labels), np.zeros_like(labels)):
        y = np.concatenate([labels, weights], axis=1)
        assert float(LabelsCategoricalCrossentropy(num_classes=C)(y, scores)) == pytest.approx(expected, rel=1e-6)


def test_losses_serialise_with_their_class_count():
    for cls in (MaskedBinaryCrossentropy, LabelsCategoricalCrossentropy):
        loss = cls(num_classes=C)
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is cls and again.num_classes == C
