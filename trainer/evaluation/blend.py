"""Does a blend of the model with the baseline pay out of fold, and at which weight (numpy/pandas, no model).

Both scorers' out-of-fold slices are aligned row for row (same slices: recording_id, kind, row_index,
slice_start; same fold and labels), reduced to recordings by the competition's rule (a recording's
score per species is the max over its slices), and a blend

    blend = w * rank(model) + (1 - w) * rank(baseline),   w in GRID = 0, 0.1, ..., 1

is scored by recording LWLRAP at every w. rank() is the within-recording rank: each recording's C
species ranked by score, average rank for ties, scaled to [0, 1] ((rank - 1) / (C - 1)). Why that
normalisation: the two score scales differ (logistic regression probabilities vs a sigmoid network
trained on masked labels), and LWLRAP depends only on how each recording orders its species, so
ranks within a recording make the blend invariant to any increasing transform of either model's
scores while keeping what LWLRAP measures (which species a recording puts first). A plain mean of
probabilities would let the scorer with the wider spread dominate; per-species ranks over recordings
would erase the species' priors that LWLRAP rewards (a rare species ranked as high as a common one)
and depend on which recordings are ranked together (OOF and test sets differ). Within-recording
ranks need no other recording, so the test submission is normalised exactly as the OOF rows.
At w = 1 the blend orders every recording as the model does, so its LWLRAP is the model's; at w = 0
the baseline's.

The blend "pays" only when its best LWLRAP beats both the model and the baseline by at least MARGIN;
otherwise the weight to use is 1.0 (the model alone), and a baseline better than the model is said so.
Among grid weights of equal LWLRAP, w = 1, then w = 0, then the largest: a tie with a single model
is no reason to blend.

    from trainer.evaluation import blend
    result = blend.oof_blend(model_oof, baseline_oof)        # DataFrames: the CV oof.csv, the baseline's oof.csv
    result.pays, result.weight, result.blend_lwlrap, result.finding
    result = blend.search_weight(truth, model, baseline)     # recording-level numpy [R, C] each
    scores = blend.blend_scores(model_test, baseline_test, result.weight)   # [R, C] submission scores
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from core.errors import UserError
from trainer.evaluation import columns
from trainer.evaluation.lwlrap import lwlrap, recording_max

GRID = tuple(k / 10 for k in range(11))  # 0.0, 0.1, ..., 1.0: the model's weight
MARGIN = 0.005  # recording LWLRAP the blend must gain over the better of the two to be used
NORMALISATION = "within-recording rank"
KEY = ("recording_id", "kind", "row_index", "slice_start")  # one training slice of the shards
_TIE = 1e-12  # LWLRAP values this close are equal (sums of the same precisions in another order)


class BlendError(UserError):
    """The model's and the baseline's out-of-fold rows are not the same slices (or not comparable)."""


def recording_ranks(scores: Any) -> np.ndarray:
    """float [R, C] -> float64 [R, C] in [0, 1]: each row's species ranked by score (ties: average rank).

    0 for the lowest species of a recording, 1 for the highest; one species (C = 1) gets 0.5.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [recordings, classes], got shape {scores.shape}")
    num_classes = scores.shape[1]
    rank = scipy.stats.rankdata(scores, method="average", axis=1) - 1.0  # 0-based average rank per row
    return rank / (num_classes - 1) if num_classes > 1 else np.full(scores.shape, 0.5)


def blend_scores(model: Any, baseline: Any, weight: float) -> np.ndarray:
    """weight * rank(model) + (1 - weight) * rank(baseline): float [R, C] twice -> float64 [R, C] in [0, 1]."""
    model, baseline = np.asarray(model, np.float64), np.asarray(baseline, np.float64)
    if model.shape != baseline.shape:
        raise ValueError(f"model scores {model.shape} and baseline scores {baseline.shape} differ in shape")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    return weight * recording_ranks(model) + (1.0 - weight) * recording_ranks(baseline)


@dataclasses.dataclass(frozen=True)
class BlendResult:
    """Recording LWLRAP of the model, the baseline and the blend at each grid weight."""

    model_lwlrap: float
    baseline_lwlrap: float
    weights: tuple[float, ...]
    lwlrap_by_weight: tuple[float, ...]
    best_weight: float
    blend_lwlrap: float  # at best_weight
    margin: float
    num_recordings: int

    @property
    def pays(self) -> bool:
        return self.blend_lwlrap >= max(self.model_lwlrap, self.baseline_lwlrap) + self.margin

    @property
    def weight(self) -> float:
        """The model's weight to predict with: best_weight when the blend pays, else 1.0 (the model alone)."""
        return self.best_weight if self.pays else 1.0

    @property
    def finding(self) -> str:
        m, b, w, x = self.model_lwlrap, self.baseline_lwlrap, self.best_weight, self.blend_lwlrap
        if self.pays:
            return (f"blend pays: {w:.1f} x model + {1 - w:.1f} x baseline scores {x:.4f} out of fold, "
                    f"above the model ({m:.4f}) and the baseline ({b:.4f}) by >= {self.margin}")
        verdict = f"the blend does not pay (best {x:.4f} at model weight {w:.1f}, margin {self.margin}); model alone"
        if b > m:
            verdict += f"; the baseline beats the model out of fold ({b:.4f} vs {m:.4f})"
        return verdict

    def to_dict(self) -> dict[str, Any]:
        """report.json's "blend" entry."""
        return {"normalisation": NORMALISATION, "model_recording_lwlrap": self.model_lwlrap,
                "baseline_recording_lwlrap": self.baseline_lwlrap, "best_weight": self.best_weight,
                "blend_recording_lwlrap": self.blend_lwlrap, "margin": self.margin, "pays": self.pays,
                "weight": self.weight, "finding": self.finding, "num_recordings": self.num_recordings,
                "grid": [{"weight": w, "recording_lwlrap": v}
                         for w, v in zip(self.weights, self.lwlrap_by_weight)]}


def _pick(weights: Sequence[float], values: Sequence[float]) -> int:
    """Index of the best weight; ties go to w = 1, then w = 0, then the largest weight."""
    best = max(values)
    tied = [i for i, v in enumerate(values) if v >= best - _TIE]
    for end in (1.0, 0.0):
        for i in tied:
            if weights[i] == end:
                return i
    return max(tied, key=lambda i: weights[i])


def search_weight(truth: Any, model: Any, baseline: Any, weights: Sequence[float] = GRID,
                  margin: float = MARGIN) -> BlendResult:
    """Recording-level truth [R, C], model and baseline scores [R, C] -> the blend's LWLRAP at each weight.

    Raises trainer.evaluation.lwlrap.LwlrapError when no recording holds a positive.
    """
    truth = np.asarray(truth, np.float64)
    model, baseline = np.asarray(model, np.float64), np.asarray(baseline, np.float64)
    if not truth.shape == model.shape == baseline.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape}, model {model.shape} and baseline {baseline.shape} must all be [R, C]")
    weights = tuple(float(w) for w in weights)
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"blend weights must be in [0, 1], got {weights}")
    model_ranks, baseline_ranks = recording_ranks(model), recording_ranks(baseline)
    values = tuple(float(lwlrap(truth, w * model_ranks + (1.0 - w) * baseline_ranks)) for w in weights)
    best = _pick(weights, values)
    return BlendResult(model_lwlrap=float(lwlrap(truth, model)), baseline_lwlrap=float(lwlrap(truth, baseline)),
                       weights=weights, lwlrap_by_weight=values, best_weight=weights[best],
                       blend_lwlrap=values[best], margin=float(margin), num_recordings=int(truth.shape[0]))


def _describe(key: Sequence[Any]) -> str:
    """A slice's key for a message: recording_id=..., kind=..., row_index=..., slice_start=..."""
    return ", ".join(f"{name}={value}" for name, value in zip(KEY, key))


def _keyed(table: pd.DataFrame, who: str) -> pd.DataFrame:
    """`table` indexed by KEY (recording_id as str); BlendError naming `who` for a missing column or a repeated key."""
    missing = [k for k in (*KEY, "fold") if k not in table.columns]
    if missing:
        raise BlendError(f"{who} has no {', '.join(missing)} column(s): its slices cannot be matched")
    keyed = table.assign(recording_id=table["recording_id"].astype(str)).set_index(list(KEY))
    repeated = keyed.index[keyed.index.duplicated()]
    if len(repeated):
        raise BlendError(f"{who} lists {len(repeated)} slice(s) more than once, e.g. {_describe(repeated[0])}")
    return keyed


def align_oof(model_oof: pd.DataFrame, baseline_oof: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's OOF rows and the baseline's rows of the same slices, in the model's order.

    Only the baseline's rows of the model's folds are used. BlendError when a slice of one is missing from
    the other, a slice sits in different folds, or a recording's species (the max of its slices' y*) differ:
    then the two were not scored on the same shards, and a blend weight chosen on them would mean nothing.
    Slice labels may differ (each scorer labels a slice by its own window).
    """
    model_rows = _keyed(model_oof, "the model's OOF table")
    baseline_rows = _keyed(baseline_oof, "the baseline's oof.csv")
    baseline_rows = baseline_rows[baseline_rows["fold"].isin(model_rows["fold"].unique())]
    for who, table in (("model", model_rows), ("baseline", baseline_rows)):
        if len(columns.find(table.columns, columns.SCORE)) != len(columns.find(table.columns, columns.LABEL)):
            raise BlendError(f"the {who}'s OOF table needs as many s* as y* columns")
    labels = columns.find(model_rows.columns, columns.LABEL)
    if labels != columns.find(baseline_rows.columns, columns.LABEL):
        raise BlendError(f"the model scores {len(labels)} classes, the baseline "
                         f"{len(columns.find(baseline_rows.columns, columns.LABEL))}")
    only_model = model_rows.index.difference(baseline_rows.index)
    only_baseline = baseline_rows.index.difference(model_rows.index)
    if len(only_model) or len(only_baseline):
        example = only_model[0] if len(only_model) else only_baseline[0]
        raise BlendError(f"the model's and the baseline's OOF slices differ: {len(only_model)} only in the model's, "
                         f"{len(only_baseline)} only in the baseline's (e.g. {_describe(example)}); were they "
                         f"made from the same shards?")
    baseline_rows = baseline_rows.loc[model_rows.index]
    if not (baseline_rows["fold"].to_numpy() == model_rows["fold"].to_numpy()).all():
        raise BlendError("the model's and the baseline's OOF tables put some slices in different folds")
    # Each scorer labels a slice by its own window (the model's window_seconds, the baseline's), so a box
    # near a slice's edge may count for one and not the other; what both must agree on is each recording's
    # truth (the species with a box in it), which is what the blend is scored against.
    model_truth = (model_rows[labels] >= 0.5).groupby(level="recording_id").max()  # [R, C] bool
    baseline_truth = (baseline_rows[labels] >= 0.5).groupby(level="recording_id").max()
    if not model_truth.equals(baseline_truth):
        raise BlendError("the model's and the baseline's OOF tables give some recordings different species")
    return model_rows.reset_index(), baseline_rows.reset_index()


def recording_scores(model_rows: pd.DataFrame, baseline_rows: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Aligned slice rows (align_oof) -> (truth, model, baseline) per recording, float64 [R, C] each (slice max)."""
    ids = model_rows["recording_id"].astype(str).to_numpy()
    labels, scores = columns.find(model_rows.columns, columns.LABEL), columns.find(model_rows.columns, columns.SCORE)
    _, truth, model = recording_max(ids, model_rows[labels].to_numpy(), model_rows[scores].to_numpy())
    _, _, baseline = recording_max(ids, baseline_rows[labels].to_numpy(), baseline_rows[scores].to_numpy())
    return truth, model, baseline


def oof_blend(model_oof: pd.DataFrame, baseline_oof: pd.DataFrame, weights: Sequence[float] = GRID,
              margin: float = MARGIN) -> BlendResult:
    """align_oof, recording_scores, search_weight: the blend's figures on the model's out-of-fold slices."""
    return search_weight(*recording_scores(*align_oof(model_oof, baseline_oof)), weights=weights, margin=margin)
