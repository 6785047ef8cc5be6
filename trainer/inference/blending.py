"""`make predict --blend_baseline auto`: blend the fold ensemble with the baseline when the CV report says it pays.

The runs root is the one dir holding every ensembled run (`--runs_root`, or the common parent of the
`--run_dir`s). Its cv/report.json (trainer.training.report) holds the out-of-fold blend search
(trainer.evaluation.blend); when that says the blend pays, for exactly the fold runs being ensembled
(by name: foldK), the submission becomes

    weight * rank(ensemble) + (1 - weight) * rank(baseline)

with rank() the within-recording rank of trainer.evaluation.blend (each test recording's species ranked
among themselves, no other recording involved, as out of fold) and the baseline's scores from
runs_root/baseline/submission.csv (trainer.baseline.run; its rows must be sample_submission.csv's), and only
while the baseline's oof.csv and submission.csv are the files the cv report fingerprinted (a baseline re-run
after `make cv` may differ from the one the weight was chosen beside).
Otherwise the ensemble alone, and `reason` says why in one line. Everything here is read before inference.

    plan = blending.plan_blend("auto", run_dirs, sample, recording_ids)   # before any model loads
    print(plan.reason)
    scores = plan.apply(ensemble_scores)                                  # [R, C] in recording_ids order
    summary["blend"] = plan.describe()
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core import fs
from core.errors import UserError
from trainer.evaluation import blend, columns
from trainer.inference import submission
from trainer.training import cv, report
from trainer.training import run_layout as layout

MODES = ("auto", "off")


@dataclasses.dataclass(frozen=True)
class BlendPlan:
    """What the submission will be: the ensemble alone (weight None) or its blend with the baseline."""

    mode: str
    reason: str  # one log line: what is blended at which weight, or why the ensemble stands alone
    weight: float | None = None  # the ensemble's weight; None: no blend
    cv_report: str | None = None
    baseline_submission: str | None = None
    baseline_scores: np.ndarray | None = None  # float [R, C], rows in the recording order predict scores

    def apply(self, ensemble: np.ndarray) -> np.ndarray:
        """The ensemble's recording scores [R, C] -> the submission's scores [R, C]."""
        if self.weight is None:
            return ensemble
        return blend.blend_scores(ensemble, self.baseline_scores, self.weight).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """For <output>.config.json."""
        out: dict[str, Any] = {"mode": self.mode, "blended": self.weight is not None, "reason": self.reason}
        if self.weight is not None:
            out.update({"model_weight": self.weight, "baseline_weight": round(1.0 - self.weight, 10),
                        "normalisation": blend.NORMALISATION, "cv_report": self.cv_report,
                        "baseline_submission": self.baseline_submission})
        return out


def runs_root_of(run_dirs: Sequence[str]) -> str | None:
    """The one dir directly holding every run dir, or None when they sit in different dirs."""
    parents = {fs.dirname(str(d).rstrip("/")) for d in run_dirs}
    return parents.pop() if len(parents) == 1 else None


def baseline_scores(path: str, sample: pd.DataFrame, recording_ids: Sequence[str]) -> np.ndarray:
    """The baseline submission's scores, float64 [R, C], rows in `recording_ids` order.

    UserError unless it holds exactly sample_submission.csv's recordings and species.
    """
    table = submission.read_score_table(path)
    if list(table.columns) != list(sample.columns):
        raise UserError(f"{path} scores {len(table.columns) - 1} species, sample_submission.csv "
                        f"{len(sample.columns) - 1}; re-run `make baseline` on these shards or pass "
                        f"--blend_baseline off")
    try:
        submission.check_recordings(table[columns.ID].tolist(), sample, path)
    except submission.SubmissionError as e:
        raise UserError(f"{e}; re-run `make baseline` on these shards or pass --blend_baseline off") from e
    scores = table.set_index(columns.ID).loc[list(recording_ids)].to_numpy(np.float64)
    if not np.isfinite(scores).all():
        raise UserError(f"{path} holds NaN or infinite scores; re-run `make baseline` or pass --blend_baseline off")
    return scores


def plan_blend(mode: str, run_dirs: Sequence[str], sample: pd.DataFrame, recording_ids: Sequence[str]) -> BlendPlan:
    """What predict will write (see the module docstring); reads only the report and the baseline submission."""
    if mode not in MODES:
        raise UserError(f"--blend_baseline must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return BlendPlan(mode, "model alone (--blend_baseline off)")
    alone = "model alone (--blend_baseline auto): "
    root = runs_root_of(run_dirs)
    if root is None:
        return BlendPlan(mode, alone + "the runs are not in one runs root, so no cv report applies to them")
    report_path = fs.join(root, cv.CV_DIR, report.REPORT_FILE)
    if not fs.isfile(report_path):
        return BlendPlan(mode, alone + f"no cv report at {report_path} (`make cv` writes it)")
    try:
        cv_result = fs.read_json(report_path)
    except ValueError as e:
        raise UserError(f"{report_path} is not valid JSON ({e}); run `make cv` again or pass "
                        f"--blend_baseline off") from e
    mix = cv_result.get("blend")
    if not mix:
        return BlendPlan(mode, alone + f"{report_path} has no blend (no baseline beside the model when `make cv` "
                                       f"wrote it; run `make baseline`, then `make cv` again)")
    if "skipped" in mix:
        return BlendPlan(mode, alone + f"{report_path}: {mix['skipped']}")
    if not mix.get("pays"):
        return BlendPlan(mode, alone + f"{report_path}: {mix.get('finding')}")
    report_runs = sorted(fs.basename(str(f.get("run_dir"))) for f in cv_result.get("folds", {}).values())
    ensemble_runs = sorted(fs.basename(d) for d in run_dirs)
    if report_runs != ensemble_runs:
        return BlendPlan(mode, alone + f"the blend weight of {report_path} was chosen for {', '.join(report_runs)}, "
                                       f"the ensemble is {', '.join(ensemble_runs)}")
    path = fs.join(root, cv.BASELINE_DIR, layout.BASELINE_SUBMISSION)
    if not fs.isfile(path):
        return BlendPlan(mode, alone + f"no baseline submission at {path} (`make baseline` writes it with test "
                                       f"shards)")
    seen = cv_result.get("baseline") or {}
    now = layout.baseline_fingerprint(fs.join(root, cv.BASELINE_DIR))
    changed = [name for name, digest in now.items() if seen.get(name, digest) != digest]  # older reports: no key
    if changed:
        files = " and ".join(n.replace("_sha256", ".csv") for n in changed)
        return BlendPlan(mode, alone + f"the baseline's {files} in {fs.join(root, cv.BASELINE_DIR)} changed since "
                                       f"`make cv` chose the blend on it ({report_path}); run `make cv` again to "
                                       f"blend with this baseline")
    weight = float(mix.get("weight", np.nan))
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"{report_path} gives the blend a model weight of {mix.get('weight')}, not in [0, 1]; run "
                        f"`make cv` again or pass --blend_baseline off")
    reason = (f"blending with the baseline ({path}) at model weight {weight:g}, {blend.NORMALISATION}s; "
              f"out of fold ({report_path}): {mix.get('finding')}")
    return BlendPlan(mode, reason, weight, report_path, path, baseline_scores(path, sample, recording_ids))
