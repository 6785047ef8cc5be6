"""A hand-worked blend case and the out-of-fold tables that hold it, for the blend tests (no training).

TRUTH, MODEL and BASELINE are recording-level [4 recordings, 3 species]; EXPECTED_BY_WEIGHT is the
recording LWLRAP of w * rank(model) + (1 - w) * rank(baseline) at w = 0, 0.1, ..., 1, worked out below.

    table = slices(MODEL, seed=0)                   # a val_predictions.csv / oof.csv-shaped frame, 8 slices
    run_dirs = write_fold_runs(root, table)         # root/fold0, root/fold1 with val_predictions.csv
    write_baseline_oof(root / "baseline", slices(BASELINE, seed=1))
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

# Recordings 0, 1: species 0 present; 2, 3: species 1. The model is right on 0, 1 (species 0 on top) and
# ranks species 1 second on 2, 3; the baseline is right on 2, 3 and ranks species 0 second on 0, 1.
TRUTH = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]], float)
MODEL = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.4], [0.9, 0.6, 0.2], [0.7, 0.5, 0.1]])  # a sigmoid net's spread
BASELINE = np.array([[0.03, 0.08, 0.01], [0.02, 0.05, 0.01], [0.01, 0.07, 0.04], [0.02, 0.09, 0.03]])  # small probs
# Within-recording ranks, recordings 0-1: model (1, 0, 0.5), baseline (0.5, 1, 0); recordings 2-3: model
# (1, 0.5, 0), baseline (0, 1, 0.5). Blend of model weight w, recordings 0-1: species 0 = 0.5 + 0.5 w,
# species 1 = 1 - w, species 2 = 0.5 w: species 0 first iff w > 1/3, else second (precision 1/2).
# Recordings 2-3: species 1 = 1 - 0.5 w, species 0 = w, species 2 = 0.5 - 0.5 w: first iff w < 2/3.
# So LWLRAP = 0.75 for w <= 0.3 and w >= 0.7 (one half at 1, the other at 1/2), 1.0 for w in 0.4..0.6.
EXPECTED_BY_WEIGHT = [0.75] * 4 + [1.0] * 3 + [0.75] * 4
NUM_CLASSES = 3


def slices(scores_by_recording: np.ndarray, seed: int) -> pd.DataFrame:
    """Two slices per recording of TRUTH, recording r in fold r % 2: a tp slice with the recording's labels and
    scores, a background slice without labels and a tenth of the scores (so the max is the tp's); rows shuffled."""
    rows = []
    for r, (truth, scores) in enumerate(zip(TRUTH, scores_by_recording)):
        base = {"recording_id": f"rec{r}", "fold": r % 2}
        rows.append({**base, "kind": "tp", "row_index": r, "slice_start": 0,
                     **{f"y{c}": truth[c] for c in range(NUM_CLASSES)},
                     **{f"s{c}": scores[c] for c in range(NUM_CLASSES)}})
        rows.append({**base, "kind": "background", "row_index": -1, "slice_start": 96000,
                     **{f"y{c}": 0.0 for c in range(NUM_CLASSES)},
                     **{f"s{c}": scores[c] / 10 for c in range(NUM_CLASSES)}})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_fold_runs(root, model_oof: pd.DataFrame) -> dict[int, str]:
    """root/foldK with the val_predictions.csv (the table's fold K rows), history.csv and summary.json the CV
    report reads; returns {K: run dir}."""
    run_dirs = {}
    for fold, rows in model_oof.groupby("fold"):
        run_dir = os.path.join(str(root), f"fold{fold}")
        os.makedirs(run_dir, exist_ok=True)
        rows.to_csv(os.path.join(run_dir, "val_predictions.csv"), index=False)
        pd.DataFrame({"epoch": [0], "val_rec_lwlrap": [0.5]}).to_csv(os.path.join(run_dir, "history.csv"),
                                                                     index=False)
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump({"fold": int(fold), "best_epoch": 0}, f)
        run_dirs[int(fold)] = run_dir
    return run_dirs


def write_baseline_oof(baseline_dir, baseline_oof: pd.DataFrame) -> str:
    """baseline_dir/oof.csv as trainer.baseline.run writes it; returns the dir."""
    os.makedirs(str(baseline_dir), exist_ok=True)
    baseline_oof.to_csv(os.path.join(str(baseline_dir), "oof.csv"), index=False)
    return str(baseline_dir)
