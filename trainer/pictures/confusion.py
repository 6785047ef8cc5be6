"""Which species outrank the true one: the pairs that cost LWLRAP, from the out-of-fold slices.

LWLRAP scores each positive label (slice i, true species t) by the precision at its rank: every
species k that is not a label of the slice and scores at or above t (ties count, as in
trainer.evaluation.lwlrap) lowers it. `outranked` counts, for every ordered pair (t, k), the out-of-fold
slices with true species t where k scores at or above t; divided by the slices of t it is the
share of t's positives that k beats. confusion.png shows that share as a species x species image,
the top pairs listed beside it.

    from trainer.pictures import confusion
    counts, positives = confusion.outranked(truth, scores)     # [C, C] int, [C] int
    confusion.write_confusion(truth, scores, "runs/demo/cv/confusion.png")   # trainer.training.report does this
"""
from __future__ import annotations

import numpy as np

from trainer.pictures import plots

CONFUSION_PNG = "confusion.png"


def outranked(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """truth [N, C] (>= 0.5 positive), scores [N, C] -> (counts int64 [C, C], positives int64 [C]).

    counts[t, k] = slices with t positive and k not positive where scores[k] >= scores[t];
    positives[t] = slices with t positive. The diagonal is 0.
    """
    positive = np.asarray(truth) >= 0.5  # [N, C]
    scores = np.asarray(scores, np.float64)
    at_or_above = scores[:, None, :] >= scores[:, :, None]  # [N, t, k]: k scores at or above t
    pairs = positive[:, :, None] & ~positive[:, None, :] & at_or_above  # [N, t, k]
    return pairs.sum(axis=0).astype(np.int64), positive.sum(axis=0).astype(np.int64)


def outranked_share(counts: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """counts[t, k] / positives[t] as float64 [C, C]; NaN for species without positives."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives[:, None] > 0, counts / np.maximum(positives[:, None], 1), np.nan)


def top_pairs(counts: np.ndarray, positives: np.ndarray, limit: int = 10) -> list[tuple[int, int, int, int]]:
    """(true t, outranking k, count, positives of t) of the most frequent pairs, most first."""
    flat = np.argsort(-counts, axis=None, kind="stable")[:limit]
    pairs = [(int(t), int(k)) for t, k in zip(*np.unravel_index(flat, counts.shape))]
    return [(t, k, int(counts[t, k]), int(positives[t])) for t, k in pairs if counts[t, k] > 0]


def plot_confusion(counts: np.ndarray, positives: np.ndarray, path: str, title: str) -> None:
    """The share image (rows: true species, columns: species scoring at or above it) and the top pairs."""
    share = outranked_share(counts, positives)
    classes = counts.shape[0]
    fig = plots.new_figure(max(8.0, 0.35 * classes + 4.0), max(5.0, 0.3 * classes + 1.5))
    ax, text_ax = fig.subplots(1, 2, width_ratios=(3, 1))
    image = ax.imshow(share, cmap="magma_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes), [f"{t} ({positives[t]})" for t in range(classes)])
    ax.tick_params(labelsize=7)
    ax.set(xlabel="species scoring at or above the true one", ylabel="true species (positive slices)", title=title)
    fig.colorbar(image, ax=ax, label="share of the true species' positive slices", shrink=0.8)
    lines = [f"{t} < {k}: {n}/{p}" for t, k, n, p in top_pairs(counts, positives)] or ["(none)"]
    text_ax.axis("off")
    text_ax.text(0.0, 1.0, "most frequent pairs\ntrue < outranking: slices\n\n" + "\n".join(lines),
                 va="top", family="monospace", fontsize=9, transform=text_ax.transAxes)
    plots.save_png(fig, path, dpi=100)


def write_confusion(truth: np.ndarray, scores: np.ndarray, path: str) -> str:
    """confusion.png of out-of-fold slices (labels, scores [N, C]) at `path`; returns the path."""
    counts, positives = outranked(truth, scores)
    plot_confusion(counts, positives, path, f"Out-of-fold slices ({len(truth)}): who outranks the true species")
    return path
