"""Label-weighted label-ranking average precision (LWLRAP), the RFCX competition metric.

For every positive label j of every row (clip) i: precision(i, j) = hits / rank, where
rank = number of labels k with score(i, k) >= score(i, j) (j itself included) and hits = how many
of those are positive. LWLRAP is the mean of precision(i, j) over all (row, positive label) pairs;
equivalently each class's mean precision over its positives, weighted by its share of positives.

Tie rule (sklearn's): a label tied with a positive counts as ranked above it, so ties never raise
the score. With this rule LWLRAP equals
``sklearn.metrics.label_ranking_average_precision_score(truth, scores, sample_weight=positives per
row)`` (rows without positives get weight 0, i.e. are left out), ties included; tests check it.
A label is positive when its truth value is >= 0.5.

The Keras metric accumulates per-class precision sums and positive counts over batches (metric
variables, so Keras sums them across replicas under tf.distribute) and divides only in
`result()`; averaging per-batch LWLRAP values instead is biased. Inputs of any float dtype
(float16/bfloat16 under mixed precision) are cast to float32.

Usage::

    from trainer.evaluation.lwlrap import LWLRAP, lwlrap, per_class_lwlrap
    model.compile(..., metrics=[LWLRAP(num_classes=24)])     # reports "lwlrap"
    score = lwlrap(truth, scores)                             # numpy [rows, classes] -> float
    score = recording_lwlrap(ids, truth, scores)              # rows of slices, max per recording
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

_ROWS_PER_CHUNK_ELEMENTS = 1 << 24  # bound on rows * classes^2 per chunk of the numpy version


class LwlrapError(ValueError):
    """Inputs of the wrong shape, non-finite scores, or no positive label at all."""


def _row_precisions(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """precision(i, j) for positive labels, 0 elsewhere: bool [n, C], float [n, C] -> float64 [n, C]."""
    out = np.zeros(scores.shape, np.float64)
    chunk = max(1, _ROWS_PER_CHUNK_ELEMENTS // max(1, scores.shape[1] ** 2))
    for start in range(0, scores.shape[0], chunk):
        s, positive = scores[start : start + chunk], truth[start : start + chunk]
        at_or_above = s[:, None, :] >= s[:, :, None]  # [rows, j, k]: label k ranked at or above label j
        rank = at_or_above.sum(axis=-1)  # [rows, C] >= 1 (j itself)
        hits = (at_or_above & positive[:, None, :]).sum(axis=-1)  # [rows, C]
        out[start : start + chunk] = np.where(positive, hits / rank, 0.0)
    return out


def _check(truth: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    truth, scores = np.asarray(truth), np.asarray(scores, dtype=np.float64)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise LwlrapError(f"truth and scores must both be [rows, classes], got {truth.shape} and {scores.shape}")
    if not np.isfinite(scores).all():
        raise LwlrapError("scores contain NaN or infinity")
    return truth >= 0.5, scores


def per_class_lwlrap(truth: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-class LWLRAP and class weights: [rows, C], [rows, C] -> (float64 [C], float64 [C]).

    per_class[c] is the mean precision over the positives of class c (0 for a class without
    positives); weight[c] is class c's share of all positives. lwlrap = sum(per_class * weight).
    """
    positive, scores = _check(truth, scores)
    counts = positive.sum(axis=0).astype(np.float64)
    if counts.sum() == 0:
        raise LwlrapError("no positive labels: LWLRAP is undefined")
    sums = _row_precisions(positive, scores).sum(axis=0)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0), counts / counts.sum()


def lwlrap(truth: Any, scores: Any) -> float:
    """LWLRAP of `scores` [rows, C] against multi-hot `truth` [rows, C] (see module docstring)."""
    per_class, weight = per_class_lwlrap(truth, scores)
    return float(np.sum(per_class * weight))


def recording_max(recording_ids: Any, truth: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of slices/windows -> rows of recordings, the competition's aggregation.

    recording_ids [rows], truth [rows, C], scores [rows, C] -> (ids [R] sorted, truth [R, C], scores [R, C]):
    a recording's score for a species is the max over its rows, and the species is present when
    any row has it (truth max).
    """
    ids = np.asarray(recording_ids).astype(str)
    truth, scores = np.asarray(truth, np.float64), np.asarray(scores, np.float64)
    if not (ids.shape[0] == truth.shape[0] == scores.shape[0]) or truth.shape != scores.shape:
        raise LwlrapError(f"recording_max needs one id per row and equal shapes, got {ids.shape}, "
                          f"{truth.shape}, {scores.shape}")
    unique, owner = np.unique(ids, return_inverse=True)
    rec_truth = np.full((len(unique), truth.shape[1]), -np.inf)
    rec_scores = np.full((len(unique), scores.shape[1]), -np.inf)
    np.maximum.at(rec_truth, owner, truth)
    np.maximum.at(rec_scores, owner, scores)
    return unique, rec_truth, rec_scores


def recording_lwlrap(recording_ids: Any, truth: Any, scores: Any) -> float:
    """LWLRAP at the recording level: max over each recording's rows, then `lwlrap` (see recording_max)."""
    _, rec_truth, rec_scores = recording_max(recording_ids, truth, scores)
    return lwlrap(rec_truth, rec_scores)


@keras.saving.register_keras_serializable(package="rfcx")
class LWLRAP(keras.metrics.Metric):
    """Streaming LWLRAP over batches of (truth [batch, C] or packed [batch, 2C], scores [batch, C]).

    Args:
      num_classes: C.
      name: metric name ("lwlrap": Keras logs "lwlrap" / "val_lwlrap").
    update_state's optional sample_weight [batch] weights each row's precisions and positives
    (weight 2 counts a row twice). result() is 0.0 while no positive has been seen.
    """

    def __init__(self, num_classes: int, name: str = "lwlrap", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.precision_sums = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", dtype="float32", name="precision_sums"
        )
        self.positive_counts = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", dtype="float32", name="positive_counts"
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        # y_true may be packed [labels | weights] (trainer.data.targets): only the labels are ranked.
        y_true = y_true[..., : self.num_classes]
        scores = ops.reshape(ops.cast(y_pred, "float32"), (-1, self.num_classes))  # [B, C]
        positive = ops.cast(ops.reshape(ops.cast(y_true, "float32"), (-1, self.num_classes)) >= 0.5, "float32")
        # at_or_above[b, j, k] = 1 if label k is scored >= label j (ties count as above).
        at_or_above = ops.cast(ops.expand_dims(scores, 1) >= ops.expand_dims(scores, 2), "float32")  # [B, C, C]
        rank = ops.sum(at_or_above, axis=-1)  # [B, C], >= 1
        hits = ops.squeeze(ops.matmul(at_or_above, ops.expand_dims(positive, -1)), -1)  # [B, C]
        precision = positive * hits / rank  # [B, C], 0 for negatives
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))  # [B, 1]
            precision, positive = precision * weight, positive * weight
        self.precision_sums.assign_add(ops.sum(precision, axis=0))
        self.positive_counts.assign_add(ops.sum(positive, axis=0))

    def result(self) -> Any:
        total = ops.sum(self.positive_counts)
        return ops.where(total > 0, ops.sum(self.precision_sums) / ops.maximum(total, 1e-12), 0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}
