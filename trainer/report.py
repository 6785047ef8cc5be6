"""Cross-validation report: out-of-fold predictions, LWLRAP overall / per fold / per class, plots.

Each fold run's val_predictions.csv (recording_id,row_index,slice_start,fold,y0..y{C-1},s0..s{C-1})
holds the model's scores of that fold's validation slices; concatenated they are the out-of-fold
(OOF) predictions, each slice scored by the one model that did not train on its recording. Writes
into OUT (runs_root/cv by trainer.cv):

    oof.csv          all validation slices of the given folds, with labels and scores
    report.json      {"overall_lwlrap", "num_examples", "folds": {K: {...}}, "per_class": [...]}
    per_class.png    per-class LWLRAP bars (with each class's share of positive labels)
    curves.png       validation LWLRAP per epoch, one line per fold (from each history.csv)

    from trainer import report
    result = report.write_cv_report({0: "runs/demo/fold0", 1: "runs/demo/fold1"}, "runs/demo/cv")
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from pipeline.errors import UserError
from trainer import plots
from trainer.lwlrap import lwlrap, per_class_lwlrap
from trainer.train import HISTORY, MONITOR, SUMMARY, VAL_PREDICTIONS, read_history


def label_columns(table: pd.DataFrame, prefix: str) -> list[str]:
    """y0..y{C-1} or s0..s{C-1} in class order (by the number after the prefix)."""
    cols = [c for c in table.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


def truth_and_scores(oof: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """OOF table -> (labels [N, C], scores [N, C]) as float64."""
    ys, ss = label_columns(oof, "y"), label_columns(oof, "s")
    if not ys or len(ys) != len(ss):
        raise UserError(f"OOF table needs y0..y{{C-1}} and s0..s{{C-1}} columns, got {list(oof.columns)}")
    return oof[ys].to_numpy(np.float64), oof[ss].to_numpy(np.float64)


def read_oof(run_dirs: Mapping[int, str | Path]) -> pd.DataFrame:
    """Concatenates val_predictions.csv of each fold's run dir (fold order)."""
    tables = []
    for fold, run_dir in sorted(run_dirs.items()):
        path = Path(run_dir) / VAL_PREDICTIONS
        if not path.is_file():
            raise UserError(f"{path} not found; fold {fold} did not finish (re-run `make cv` to resume it)")
        table = pd.read_csv(path, dtype={"recording_id": str})
        if not (table["fold"] == fold).all():
            raise UserError(f"{path} holds slices of folds {sorted(table['fold'].unique())}, expected only {fold}")
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _fold_entry(fold_rows: pd.DataFrame, run_dir: Path) -> dict[str, Any]:
    truth, scores = truth_and_scores(fold_rows)
    entry: dict[str, Any] = {"run_dir": str(run_dir), "num_examples": len(fold_rows),
                             "lwlrap": float(lwlrap(truth, scores))}
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        entry.update({k: summary[k] for k in ("best_val_lwlrap", "best_epoch", "epochs_run") if k in summary})
    return entry


def cv_report(oof: pd.DataFrame, run_dirs: Mapping[int, str | Path]) -> dict[str, Any]:
    """LWLRAP over all OOF slices, per fold (with the run's summary) and per class."""
    truth, scores = truth_and_scores(oof)
    per_class, weight = per_class_lwlrap(truth, scores)
    return {
        "overall_lwlrap": float(lwlrap(truth, scores)),
        "num_examples": len(oof),
        "folds": {str(fold): _fold_entry(oof[oof["fold"] == fold], Path(run_dir))
                  for fold, run_dir in sorted(run_dirs.items())},
        "per_class": [
            {"class": k, "lwlrap": float(per_class[k]), "weight": float(weight[k]),
             "positives": int(truth[:, k].sum())}
            for k in range(truth.shape[1])
        ],
    }


def plot_per_class(report: dict[str, Any], path: Path) -> None:
    """Bars of per-class LWLRAP; classes without positives (LWLRAP undefined) are left empty."""
    rows = report["per_class"]
    fig = plots.new_figure(max(6.0, 0.35 * len(rows)))
    ax = fig.subplots()
    classes = [r["class"] for r in rows]
    ax.bar(classes, [r["lwlrap"] if r["positives"] else np.nan for r in rows], color="tab:blue")
    ax.axhline(report["overall_lwlrap"], color="tab:red", linestyle="--",
               label=f"overall {report['overall_lwlrap']:.3f}")
    ax.set_xticks(classes)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set(xlabel="species id", ylabel="out-of-fold LWLRAP", ylim=(0.0, 1.0),
           title=f"Per-class LWLRAP over {report['num_examples']} out-of-fold slices")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=100)


def plot_curves(run_dirs: Mapping[int, str | Path], path: Path) -> None:
    """Validation LWLRAP per epoch (1-based), one line per fold, from each run's history.csv."""
    fig = plots.new_figure(6.0)
    ax = fig.subplots()
    for fold, run_dir in sorted(run_dirs.items()):
        history = read_history(str(run_dir))
        if history.empty:
            raise UserError(f"{Path(run_dir) / HISTORY} is missing or empty; fold {fold} did not finish")
        ax.plot(history["epoch"] + 1, history[MONITOR], marker="o", label=f"fold {fold}")
    ax.set(xlabel="epoch", ylabel="validation LWLRAP", title="Validation LWLRAP per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)


def write_cv_report(run_dirs: Mapping[int, str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Writes oof.csv, report.json, per_class.png and curves.png into `out_dir`; returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    oof = read_oof(run_dirs)
    oof.to_csv(out_dir / "oof.csv", index=False)
    result = cv_report(oof, run_dirs)
    (out_dir / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_per_class(result, out_dir / "per_class.png")
    plot_curves(run_dirs, out_dir / "curves.png")
    return result
