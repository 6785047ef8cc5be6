"""The baseline's model and its cross-validation: per species, StandardScaler + LogisticRegression.

Plain functions on arrays (features [N, F], labels and label_known masks [N, C]); trainer.baseline.run
reads the shards, calls these and writes the outputs. Partial labels: for species c a slice where c
is known weighs 1, any other slice `unlabelled_weight` with target 0 (see trainer.baseline.run).

    from trainer.baseline import classifier
    model = classifier.fit_one_vs_rest(features, labels, known, cfg)  # cfg: trainer.baseline.config.BaselineConfig
    scores = model.score(features)                                     # float64 [N, C]
    oof, info = classifier.cross_validate(table, cfg)                  # table: band_features.SliceTable
    classifier.oof_metrics(table, oof)["recording_lwlrap"]
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np

from trainer.baseline import band_features
from trainer.baseline.config import BaselineConfig
from trainer.evaluation.lwlrap import (
    LwlrapError,
    lwlrap,
    per_class_lwlrap,
    recording_max,
)


@dataclasses.dataclass(frozen=True)
class OneVsRest:
    """One fitted (scaler, logistic regression) per species, or a constant score where none could be fitted."""

    models: tuple  # per class: (StandardScaler, LogisticRegression) or None
    constants: np.ndarray  # float64 [C]: the score of classes without a model (NaN where a model exists)
    not_converged: tuple[int, ...] = ()

    @property
    def constant_classes(self) -> list[int]:
        return [c for c, m in enumerate(self.models) if m is None]

    def score(self, features: np.ndarray) -> np.ndarray:
        """float [N, F] -> float64 [N, C]: each species' probability (or its constant)."""
        out = np.empty((len(features), len(self.models)), np.float64)
        for c, model in enumerate(self.models):
            if model is None:
                out[:, c] = self.constants[c]
            elif len(features):
                scaler, regression = model
                out[:, c] = regression.predict_proba(scaler.transform(features))[:, 1]
        return out


def class_weights(known: np.ndarray, unlabelled_weight: float) -> np.ndarray:
    """Sample weights [N, C]: 1 where the species' label is known, `unlabelled_weight` elsewhere."""
    return np.where(np.asarray(known) >= 0.5, 1.0, float(unlabelled_weight))


def fit_one_vs_rest(features: np.ndarray, labels: np.ndarray, known: np.ndarray, cfg: BaselineConfig) -> OneVsRest:
    """Fits one model per species on float [N, F] features, labels [N, C] and known masks [N, C]."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    positive = np.asarray(labels) >= 0.5
    weights = class_weights(known, cfg.unlabelled_weight)
    num_classes = positive.shape[1]
    models: list = []
    constants = np.full(num_classes, np.nan)
    not_converged = []
    for c in range(num_classes):
        rows = weights[:, c] > 0  # weight-0 rows are left out entirely: they cannot move the fit
        y, w = positive[rows, c], weights[rows, c]
        if y.all() or not y.any():
            # No decision boundary to learn: rank the species by how often it is present.
            constants[c] = float(positive[:, c].mean()) if len(positive) else 0.0
            models.append(None)
            continue
        scaler = StandardScaler().fit(features[rows], sample_weight=w)  # per species: only its weighted rows
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            regression = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter).fit(
                scaler.transform(features[rows]), y, sample_weight=w)
        if any(issubclass(x.category, ConvergenceWarning) for x in caught):
            not_converged.append(c)
        models.append((scaler, regression))
    return OneVsRest(tuple(models), constants, tuple(not_converged))


def describe_fit(what: str, model: OneVsRest, num_slices: int) -> str:
    """One log line about a fit: slices, constant classes (once per fit), non-converged classes."""
    text = f"{what}: fitted on {num_slices} slices"
    if model.constant_classes:
        text += (f"; species without both a positive and a negative training slice get a constant score "
                 f"(their prior): {model.constant_classes}")
    if model.not_converged:
        text += f"; lbfgs did not converge within --max_iter for species {list(model.not_converged)}"
    return text


# ---- metrics ----

def lwlrap_or_none(truth: np.ndarray, scores: np.ndarray) -> float | None:
    try:
        return float(lwlrap(truth, scores))
    except LwlrapError:  # no positive label among these rows
        return None


def oof_metrics(table: band_features.SliceTable, scores: np.ndarray) -> dict[str, Any]:
    """Recording-level and slice-level LWLRAP of out-of-fold scores [N, C], overall, per fold, per class."""
    _, rec_truth, rec_scores = recording_max(table.recording_id, table.labels, scores)
    folds = {}
    for fold in sorted(set(table.fold.tolist())):
        rows = table.fold == fold
        _, fold_truth, fold_scores = recording_max(table.recording_id[rows], table.labels[rows], scores[rows])
        folds[str(fold)] = {
            "recording_lwlrap": lwlrap_or_none(fold_truth, fold_scores),
            "slice_lwlrap": lwlrap_or_none(table.labels[rows], scores[rows]),
            "num_slices": int(rows.sum()), "num_recordings": int(len(fold_truth)),
        }
    per_class = []
    try:
        values, weight = per_class_lwlrap(rec_truth, rec_scores)
    except LwlrapError:
        values = weight = np.zeros(rec_truth.shape[1])
    for c in range(rec_truth.shape[1]):
        positives = int((rec_truth[:, c] >= 0.5).sum())
        per_class.append({"class": c, "recording_lwlrap": float(values[c]) if positives else None,
                          "weight": float(weight[c]), "positive_recordings": positives})
    return {
        "recording_lwlrap": lwlrap_or_none(rec_truth, rec_scores),
        "slice_lwlrap": lwlrap_or_none(table.labels, scores),
        "num_slices": len(table), "num_recordings": int(len(rec_truth)),
        "num_recordings_with_positive": int((rec_truth >= 0.5).any(axis=1).sum()),
        "folds": folds, "per_class": per_class,
    }


def cross_validate(table: band_features.SliceTable, cfg: BaselineConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold scores [N, C] (each fold scored by the model fitted on the others) and per-fold fit info."""
    scores = np.zeros(table.labels.shape, np.float64)
    info: dict[str, Any] = {}
    folds = sorted(set(table.fold.tolist()))
    for i, fold in enumerate(folds):
        start = time.monotonic()
        val, train = table.fold == fold, table.fold != fold
        model = fit_one_vs_rest(table.features[train], table.labels[train], table.known[train], cfg)
        scores[val] = model.score(table.features[val])
        seconds = time.monotonic() - start
        print(describe_fit(f"fold {fold} ({i + 1}/{len(folds)})", model, int(train.sum()))
              + f", scored {int(val.sum())} slices ({seconds:.1f} s)", flush=True)
        info[str(fold)] = {"constant_classes": model.constant_classes, "not_converged": list(model.not_converged),
                           "train_slices": int(train.sum()), "seconds": round(seconds, 2)}
    return scores, info
