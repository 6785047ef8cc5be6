"""The cross-validation report (report.json of trainer.training.report) as Markdown tables a Git host renders.

Three tables: overall (model, and the baseline beside it when `make baseline` ran on the same
folds), per fold, per class; with the baseline, a fourth: the blend of the two at each model weight
and whether it pays (trainer.evaluation.blend). Numbers are the report's own, to 4 decimals; an undefined LWLRAP (no
positive label) is "n/a", a baseline figure that does not exist is "".

    from trainer.training import report_md
    text = report_md.cv_report_markdown(fs.read_json("runs/demo/cv/report.json"))
    report_md.write_cv_report_md("runs/demo/cv", result)     # -> runs/demo/cv/report.md (trainer.training.report does this)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from core import fs

REPORT_MD = "report.md"
NOT_AVAILABLE = "n/a"


def fmt(value: Any) -> str:
    """A cell: floats to 4 decimals, ints as they are, None as n/a."""
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table: the first column left-aligned, the numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "|".join("---:" for _ in header[1:]) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _baseline_cell(baseline: Mapping[str, Any] | None, key: str) -> Any:
    return "" if not baseline else baseline.get(key)


def overall_table(report: Mapping[str, Any]) -> str:
    base = report.get("baseline")
    rows = [("recording LWLRAP", report.get("recording_lwlrap"), _baseline_cell(base, "recording_lwlrap")),
            ("slice LWLRAP", report.get("overall_lwlrap"), _baseline_cell(base, "lwlrap")),
            ("recordings", report.get("num_recordings"), ""),
            ("slices", report.get("num_examples"), "")]
    if base:
        rows.append(("test LWLRAP", "", base.get("test_lwlrap")))
    return table(("figure", "model", "baseline"), rows)


def fold_table(report: Mapping[str, Any]) -> str:
    base_folds = (report.get("baseline") or {}).get("folds", {})
    header = ("fold", "recordings", "slices", "recording LWLRAP", "slice LWLRAP", "baseline recording LWLRAP",
              "baseline slice LWLRAP", "best epoch", "epochs run")
    rows = []
    for fold, entry in sorted(report.get("folds", {}).items(), key=lambda kv: int(kv[0])):
        base = base_folds.get(fold)
        rows.append((fold, entry.get("num_recordings"), entry.get("num_examples"), entry.get("recording_lwlrap"),
                     entry.get("lwlrap"), _baseline_cell(base, "recording_lwlrap"), _baseline_cell(base, "lwlrap"),
                     entry.get("best_epoch", ""), entry.get("epochs_run", "")))
    return table(header, rows)


def class_table(report: Mapping[str, Any]) -> str:
    """Per class; LWLRAP of a class without positives is n/a (its weight is 0)."""
    header = ("class", "positive recordings", "recording LWLRAP", "recording weight", "positive slices",
              "slice LWLRAP", "slice weight")
    rows = [(c["class"], c["positive_recordings"], c["recording_lwlrap"] if c["positive_recordings"] else None,
             c["recording_weight"], c["positives"], c["lwlrap"] if c["positives"] else None, c["weight"])
            for c in report.get("per_class", [])]
    return table(header, rows)


def blend_section(report: Mapping[str, Any]) -> list[str]:
    """The blend with the baseline: its finding and recording LWLRAP per model weight; [] without a baseline."""
    mix = report.get("blend")
    if not mix:
        return []
    if "skipped" in mix:
        return ["## Blend with the baseline", mix["skipped"]]
    rows = [("model alone (weight 1)", mix.get("model_recording_lwlrap")),
            ("baseline alone (weight 0)", mix.get("baseline_recording_lwlrap")),
            (f"best blend (weight {mix.get('best_weight'):g})", mix.get("blend_recording_lwlrap")),
            ("margin a blend must gain", mix.get("margin")),
            ("blend pays", mix.get("pays")),
            ("model weight `make predict` uses", f"{mix.get('weight'):g}")]
    grid = [(f"{g['weight']:g}", g["recording_lwlrap"]) for g in mix.get("grid", [])]
    return ["## Blend with the baseline",
            f"Out-of-fold recording LWLRAP of weight x rank(model) + (1 - weight) x rank(baseline), rank: "
            f"{mix.get('normalisation')} (each recording's species ranked among themselves). "
            f"Finding: {mix.get('finding')}.",
            table(("figure", "value"), rows), table(("model weight", "recording LWLRAP"), grid)]


def cv_report_markdown(report: Mapping[str, Any]) -> str:
    """The whole report.md text."""
    return "\n\n".join([
        "# Cross-validation report",
        "Out-of-fold LWLRAP: each slice scored by the fold model that did not train on its recording. "
        "Recording level (the competition's): a recording's score per species is the max over its slices.",
        "## Overall", overall_table(report),
        *blend_section(report),
        "## Per fold", fold_table(report),
        "## Per class", class_table(report),
        "Pictures beside this file: per_class.png, curves.png, confusion.png (which species outrank the true one).",
    ]) + "\n"


def write_cv_report_md(cv_dir: str, report: Mapping[str, Any]) -> str:
    """Writes cv_dir/report.md; returns its path."""
    path = fs.join(cv_dir, REPORT_MD)
    fs.write_text(path, cv_report_markdown(report))
    return path
