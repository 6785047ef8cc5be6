"""The contrastive loss: NT-Xent (SimCLR, Chen et al. 2020; COLA, Saeed et al. 2021 for audio) over a batch of pairs.

For a batch of B pairs with unit embeddings a_i, b_i (two views of one window), each view must pick its partner
out of the other view's batch:

    logits[i, j] = (a_i . b_j) / temperature                                    [B, B]
    loss_i = (CE(softmax(logits[i, :]), i) + CE(softmax(logits[:, i]), i)) / 2   per pair, then the batch mean

so every other pair of the batch is a negative. Under a distribution strategy each replica's share of the batch
is its own set of negatives.

    z = pair_model(...)                                 # [B, 2E]: both views' embeddings side by side
    loss = nt_xent(z[:, :E], z[:, E:], temperature=0.1)  # [B]
    net.compile(loss=PairContrastiveLoss(0.1), ...)     # y_true is ignored
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops


def nt_xent(a: Any, b: Any, temperature: float) -> Any:
    """Per-pair loss [B] of unit embeddings a, b [B, E] (row i of each = the two views of pair i)."""
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    logits = ops.matmul(a, ops.transpose(b)) / temperature  # [B, B]; the diagonal holds the positives
    positives = ops.diagonal(logits)  # [B]
    rows = ops.logsumexp(logits, axis=1) - positives  # a_i against every b_j
    cols = ops.logsumexp(logits, axis=0) - positives  # b_i against every a_j
    return (rows + cols) / 2.0


@keras.saving.register_keras_serializable(package="rfcx")
class PairContrastiveLoss(keras.losses.Loss):
    """NT-Xent on y_pred [B, 2E] = [a ‖ b]; y_true (any [B] placeholder) is not read."""

    def __init__(self, temperature: float = 0.1, name: str = "nt_xent", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        a, b = ops.split(y_pred, 2, axis=-1)  # [B, E] each
        return nt_xent(a, b, self.temperature)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


def pair_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Per pair [B]: 1.0 where view a's nearest view b in the batch is its own partner (chance: 1 / B)."""
    a, b = ops.split(y_pred, 2, axis=-1)  # [B, E] each
    nearest = ops.argmax(ops.matmul(ops.cast(a, "float32"), ops.transpose(ops.cast(b, "float32"))), axis=1)  # [B]
    return ops.cast(ops.equal(nearest, ops.arange(ops.shape(a)[0])), "float32")
