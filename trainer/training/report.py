"""Cross-validation report: out-of-fold predictions, LWLRAP overall / per fold / per class, plots.

Each fold run's val_predictions.csv (recording_id,kind,...,fold,y0..,w0..,s0..) holds the model's
scores of that fold's validation slices (tp, fp and background); concatenated they are the
out-of-fold (OOF) predictions, each slice scored by the one model that did not train on its
recording. Two levels are reported: **recording** (the competition's: a recording's score per species
is the max over its slices, against the species with a tp box in it) and slice. When the baseline
(trainer.baseline.run, `make baseline`) has been run into runs_root/baseline, its OOF scores on the same
folds stand beside the model's. Writes into OUT (runs_root/cv by trainer.training.cv):

    oof.csv          all validation slices of the given folds, with labels and scores
    report.json      {"recording_lwlrap", "overall_lwlrap" (slices), "num_examples", "num_recordings",
                      "folds": {K: {...}}, "per_class": [...], "baseline": {...} or null,
                      "blend": {"pays", "weight", "best_weight", "blend_recording_lwlrap", "grid", ...},
                      {"skipped": why, ...} when the slices do not match, or null without a baseline,
                      "shards_dir", "shards_id" (the shards the folds were trained on)}
    per_class.png    per-class LWLRAP bars (with each class's share of positive labels)
    curves.png       validation LWLRAP per epoch, one line per fold (from each history.csv)

    from trainer.training import report
    result = report.write_cv_report({0: "runs/demo/fold0", 1: "runs/demo/fold1"}, "runs/demo/cv")
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from core import fs
from core.errors import UserError
from trainer.evaluation import blend, columns
from trainer.evaluation.lwlrap import (
    LwlrapError,
    lwlrap,
    per_class_lwlrap,
    recording_max,
)
from trainer.pictures import confusion, plots
from trainer.training import report_md, run_guard
from trainer.training import run_layout as layout

CURVE = "val_rec_lwlrap"  # the history.csv column plotted per fold
OOF_FILE, REPORT_FILE, PER_CLASS_PNG, CURVES_PNG = "oof.csv", "report.json", "per_class.png", "curves.png"


def truth_and_scores(oof: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """OOF table -> (labels [N, C], scores [N, C]) as float64."""
    ys, ss = columns.find(oof.columns, columns.LABEL), columns.find(oof.columns, columns.SCORE)
    if not ys or len(ys) != len(ss):
        raise UserError(f"OOF table needs y0..y{{C-1}} and s0..s{{C-1}} columns, got {list(oof.columns)}")
    return oof[ys].to_numpy(np.float64), oof[ss].to_numpy(np.float64)


def read_oof(run_dirs: Mapping[int, str]) -> pd.DataFrame:
    """Concatenates val_predictions.csv of each fold's run dir (fold order)."""
    tables = []
    for fold, run_dir in sorted(run_dirs.items()):
        path = layout.path(str(run_dir), layout.VAL_PREDICTIONS)
        if not fs.isfile(path):
            raise UserError(f"{path} not found; fold {fold} did not finish (re-run `make cv` to resume it)")
        table = fs.read_csv(path, dtype={columns.ID: str})
        if not (table["fold"] == fold).all():
            raise UserError(f"{path} holds slices of folds {sorted(table['fold'].unique())}, expected only {fold}")
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def recording_level(oof: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """OOF slices -> (truth [R, C], scores [R, C]) per recording: max over its slices."""
    truth, scores = truth_and_scores(oof)
    _, rec_truth, rec_scores = recording_max(oof["recording_id"].astype(str).to_numpy(), truth, scores)
    return rec_truth, rec_scores


def _levels(rows: pd.DataFrame) -> dict[str, float | None]:
    """recording_lwlrap and (slice) lwlrap of some OOF rows; None where no row holds a positive."""
    out: dict[str, float | None] = {}
    for key, (truth, scores) in (("recording_lwlrap", recording_level(rows)), ("lwlrap", truth_and_scores(rows))):
        out[key] = float(lwlrap(truth, scores)) if truth.max(initial=0) >= 0.5 else None
    return out


def _fold_entry(fold_rows: pd.DataFrame, run_dir: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"run_dir": run_dir, "num_examples": len(fold_rows),
                             "num_recordings": int(fold_rows["recording_id"].nunique()), **_levels(fold_rows)}
    summary_path = layout.path(run_dir, layout.SUMMARY)
    if fs.isfile(summary_path):
        summary = fs.read_json(summary_path)
        entry.update({k: summary[k] for k in ("monitor", "best_epoch", "epochs_run", "elapsed_seconds")
                      if k in summary})
    return entry


def read_baseline_oof(baseline_dir: str | None) -> pd.DataFrame | None:
    """The baseline's oof.csv (every training slice it scored out of fold), or None when it was not run."""
    if baseline_dir is None or not fs.isfile(fs.join(baseline_dir, layout.BASELINE_OOF)):
        return None
    return fs.read_csv(fs.join(baseline_dir, layout.BASELINE_OOF), dtype={columns.ID: str})


def baseline_beside(baseline_dir: str | None, table: pd.DataFrame | None, folds: list[int]) -> dict[str, Any] | None:
    """The baseline's OOF LWLRAP on the same folds from its oof.csv `table` (read_baseline_oof), or None when
    it was not run."""
    if table is None:
        return None
    table = table[table["fold"].isin(folds)]
    if table.empty:
        return None
    saved = layout.load_baseline_report(baseline_dir) or {}
    return {"dir": baseline_dir, "folds": {str(k): _levels(table[table["fold"] == k]) for k in folds},
            **_levels(table), "test_lwlrap": saved.get("test_lwlrap"), **layout.baseline_fingerprint(baseline_dir)}


def blend_beside(oof: pd.DataFrame, baseline_oof: pd.DataFrame | None) -> dict[str, Any] | None:
    """The blend of the model with the baseline on the same OOF slices (trainer.evaluation.blend), or None
    without a baseline; {"skipped": why, "pays": False, "weight": 1.0} when their slices do not match."""
    if baseline_oof is None:
        return None
    try:
        return blend.oof_blend(oof, baseline_oof).to_dict()
    except (blend.BlendError, LwlrapError) as e:
        return {"skipped": f"no blend with the baseline: {e}", "pays": False, "weight": 1.0}


def cv_report(oof: pd.DataFrame, run_dirs: Mapping[int, str],
              baseline_dir: str | None = None) -> dict[str, Any]:
    """LWLRAP over all OOF recordings and slices, per fold (with the run's summary) and per class."""
    truth, scores = truth_and_scores(oof)
    per_class, weight = per_class_lwlrap(truth, scores)
    rec_truth, rec_scores = recording_level(oof)
    rec_per_class, rec_weight = per_class_lwlrap(rec_truth, rec_scores)
    levels = _levels(oof)
    baseline_oof = read_baseline_oof(baseline_dir)
    return {
        "recording_lwlrap": levels["recording_lwlrap"],
        "overall_lwlrap": levels["lwlrap"],  # slices
        "num_examples": len(oof),
        "num_recordings": int(oof["recording_id"].nunique()),
        "folds": {str(fold): _fold_entry(oof[oof["fold"] == fold], str(run_dir))
                  for fold, run_dir in sorted(run_dirs.items())},
        "per_class": [
            {"class": k, "recording_lwlrap": float(rec_per_class[k]), "recording_weight": float(rec_weight[k]),
             "positive_recordings": int(rec_truth[:, k].sum()),
             "lwlrap": float(per_class[k]), "weight": float(weight[k]), "positives": int(truth[:, k].sum())}
            for k in range(truth.shape[1])
        ],
        "baseline": baseline_beside(baseline_dir, baseline_oof, sorted(run_dirs)),
        "blend": blend_beside(oof, baseline_oof),
        **run_guard.shards_of(run_dirs),  # the shards the folds were trained on: shards_dir, shards_id
    }


def plot_per_class(report: dict[str, Any], path: str) -> None:
    """Bars of per-class LWLRAP; classes without positives (LWLRAP undefined) are left empty."""
    rows = report["per_class"]
    fig = plots.new_figure(max(6.0, 0.35 * len(rows)))
    ax = fig.subplots()
    classes = [r["class"] for r in rows]
    ax.bar(classes, [r["recording_lwlrap"] if r["positive_recordings"] else np.nan for r in rows], color="tab:blue")
    ax.axhline(report["recording_lwlrap"], color="tab:red", linestyle="--",
               label=f"overall {report['recording_lwlrap']:.3f}")
    if report.get("baseline"):
        ax.axhline(report["baseline"]["recording_lwlrap"], color="tab:gray", linestyle=":",
                   label=f"baseline {report['baseline']['recording_lwlrap']:.3f}")
    ax.set_xticks(classes)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set(xlabel="species id", ylabel="out-of-fold recording LWLRAP", ylim=(0.0, 1.0),
           title=f"Per-class LWLRAP over {report['num_recordings']} out-of-fold recordings")
    ax.legend(loc="lower right")
    plots.save_png(fig, path)


def plot_curves(run_dirs: Mapping[int, str], path: str) -> None:
    """Validation recording LWLRAP per epoch (1-based), one line per fold, from each run's history.csv."""
    fig = plots.new_figure(6.0)
    ax = fig.subplots()
    for fold, run_dir in sorted(run_dirs.items()):
        history = layout.read_history(str(run_dir), CURVE)
        if history.empty:
            raise UserError(f"{layout.path(str(run_dir), layout.HISTORY)} is missing or empty; fold {fold} did "
                            f"not finish")
        ax.plot(history["epoch"] + 1, history[CURVE], marker="o", label=f"fold {fold}")
    ax.set(xlabel="epoch", ylabel="validation recording LWLRAP", title="Validation recording LWLRAP per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save_png(fig, path)


def write_cv_report(run_dirs: Mapping[int, str], out_dir: str, baseline_dir: str | None = None) -> dict[str, Any]:
    """Writes oof.csv, report.json, report.md, per_class.png, curves.png and confusion.png into `out_dir`.

    Returns the report (report.json's content).
    """
    out_dir = str(out_dir)
    fs.makedirs(out_dir)
    oof = read_oof(run_dirs)
    fs.write_csv(oof, fs.join(out_dir, OOF_FILE))
    result = cv_report(oof, run_dirs, None if baseline_dir is None else str(baseline_dir))
    fs.write_json(fs.join(out_dir, REPORT_FILE), result)
    plot_per_class(result, fs.join(out_dir, PER_CLASS_PNG))
    plot_curves(run_dirs, fs.join(out_dir, CURVES_PNG))
    confusion.write_confusion(*truth_and_scores(oof), fs.join(out_dir, confusion.CONFUSION_PNG))
    report_md.write_cv_report_md(out_dir, result)
    return result
