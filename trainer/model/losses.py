"""Losses on packed targets y = [labels ‖ weights] (trainer.data.targets): masked binary cross-entropy.

    loss(y, p) = mean over species c of weights[c] * BCE(labels[c], p[c])      per example, then the batch mean

With every weight 1 it is Keras' BinaryCrossentropy exactly; a weight of 0 removes that species'
term, so its gradient is 0 (unknown labels teach nothing, rather than "absent"). Softmax (the seed's
loss) reads only the labels: categorical cross-entropy on the event's one-hot target.

    net.compile(loss=MaskedBinaryCrossentropy(num_classes=24), ...)
    value = masked_bce(y, scores, num_classes)    # numpy, the same number (validation)
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

_EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1 - eps]


@keras.saving.register_keras_serializable(package="rfcx")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on sigmoid scores [B, C], weighted per species by y's second half [B, C]."""

    def __init__(self, num_classes: int, name: str = "masked_bce", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        labels, weights = y_true[..., : self.num_classes], y_true[..., self.num_classes:]
        p = ops.clip(ops.cast(y_pred, "float32"), _EPSILON, 1.0 - _EPSILON)
        bce = -(labels * ops.log(p) + (1.0 - labels) * ops.log(1.0 - p))  # [B, C]
        return ops.mean(weights * bce, axis=-1)  # [B]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="rfcx")
class LabelsCategoricalCrossentropy(keras.losses.Loss):
    """The seed's categorical cross-entropy on softmax scores, reading the labels half of packed y."""

    def __init__(self, num_classes: int, name: str = "categorical_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = ops.cast(y_true, "float32")[..., : self.num_classes]
        return keras.losses.categorical_crossentropy(labels, ops.cast(y_pred, "float32"))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


def masked_bce(y: np.ndarray, scores: np.ndarray, num_classes: int) -> float:
    """Numpy MaskedBinaryCrossentropy averaged over rows: y [N, 2C], scores [N, C] -> float."""
    y, scores = np.asarray(y, np.float64), np.asarray(scores, np.float64)
    labels, weights = y[:, :num_classes], y[:, num_classes:]
    p = np.clip(scores, _EPSILON, 1.0 - _EPSILON)
    bce = -(labels * np.log(p) + (1.0 - labels) * np.log(1.0 - p))
    return float(np.mean(np.mean(weights * bce, axis=1))) if len(y) else float("nan")
