"""`make cv`'s extra outputs: report.md holds report.json's numbers; confusion counts the costly pairs.

report.md is parsed back as Markdown tables and compared with the report dict it was written from
(a hand-made report of the shape trainer.training.report writes, with and without the baseline). The pair
counts are checked against a per-slice loop written here and against LWLRAP itself: a slice's
precision for its one true species is 1 / (1 + number of species at or above it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import fs
from trainer.evaluation.lwlrap import per_class_lwlrap
from trainer.pictures import confusion
from trainer.training import report as report_lib
from trainer.training import report_md

REPORT = {
    "recording_lwlrap": 0.812345, "overall_lwlrap": 0.701234, "num_examples": 57, "num_recordings": 10,
    "folds": {"0": {"run_dir": "r/fold0", "num_examples": 30, "num_recordings": 5, "recording_lwlrap": 0.9,
                    "lwlrap": 0.75, "best_epoch": 2, "epochs_run": 3},
              "1": {"run_dir": "r/fold1", "num_examples": 27, "num_recordings": 5, "recording_lwlrap": 0.72468,
                    "lwlrap": None, "best_epoch": 1, "epochs_run": 3}},
    "per_class": [{"class": 0, "recording_lwlrap": 0.5, "recording_weight": 0.25, "positive_recordings": 2,
                   "lwlrap": 0.4321, "weight": 0.2, "positives": 3},
                  {"class": 1, "recording_lwlrap": 0.0, "recording_weight": 0.0, "positive_recordings": 0,
                   "lwlrap": 0.0, "weight": 0.0, "positives": 0}],
    "baseline": {"dir": "r/baseline", "recording_lwlrap": 0.61, "lwlrap": 0.55, "test_lwlrap": 0.6789,
                 "folds": {"0": {"recording_lwlrap": 0.63, "lwlrap": 0.5}, "1": {"recording_lwlrap": 0.59,
                                                                               "lwlrap": 0.6}}},
}


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """{section title: rows as {column: cell}} of every Markdown table under a `## ` heading."""
    tables, title, lines = {}, None, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            title = line[3:].strip()
        elif line.startswith("|") and title and title not in tables:
            rest = lines[i:]
            block = rest[:next((k for k, r in enumerate(rest) if not r.startswith("|")), len(rest))]
            header = [c.strip() for c in block[0].strip("|").split("|")]
            tables[title] = [dict(zip(header, (c.strip() for c in r.strip("|").split("|")))) for r in block[2:]]
    return tables


def number(cell: str) -> float | None:
    return None if cell in ("n/a", "") else float(cell)


@pytest.mark.parametrize("with_baseline", [True, False])
def test_report_md_holds_the_numbers_of_report_json(tmp_path, with_baseline):
    report = dict(REPORT, baseline=REPORT["baseline"] if with_baseline else None)
    path = report_md.write_cv_report_md(str(tmp_path), report)
    tables = parse_tables(fs.read_text(path))

    overall = {r["figure"]: r for r in tables["Overall"]}
    assert number(overall["recording LWLRAP"]["model"]) == pytest.approx(report["recording_lwlrap"], abs=5e-5)
    assert number(overall["slice LWLRAP"]["model"]) == pytest.approx(report["overall_lwlrap"], abs=5e-5)
    assert number(overall["recordings"]["model"]) == report["num_recordings"]
    assert number(overall["slices"]["model"]) == report["num_examples"]
    if with_baseline:
        assert number(overall["recording LWLRAP"]["baseline"]) == pytest.approx(0.61, abs=5e-5)
        assert number(overall["slice LWLRAP"]["baseline"]) == pytest.approx(0.55, abs=5e-5)
        assert number(overall["test LWLRAP"]["baseline"]) == pytest.approx(0.6789, abs=5e-5)
    else:
        assert overall["recording LWLRAP"]["baseline"] == "" and "test LWLRAP" not in overall

    folds = {r["fold"]: r for r in tables["Per fold"]}
    assert set(folds) == set(report["folds"])
    for k, entry in report["folds"].items():
        row = folds[k]
        assert number(row["recordings"]) == entry["num_recordings"]
        assert number(row["slices"]) == entry["num_examples"]
        for column, key in (("recording LWLRAP", "recording_lwlrap"), ("slice LWLRAP", "lwlrap")):
            expected = entry[key]
            assert number(row[column]) == (None if expected is None else pytest.approx(expected, abs=5e-5))
        assert number(row["best epoch"]) == entry["best_epoch"] and number(row["epochs run"]) == entry["epochs_run"]
        base = report["baseline"]["folds"][k] if with_baseline else None
        assert number(row["baseline recording LWLRAP"]) == (
            None if base is None else pytest.approx(base["recording_lwlrap"], abs=5e-5))

    classes = {int(r["class"]): r for r in tables["Per class"]}
    for c in report["per_class"]:
        row = classes[c["class"]]
        assert number(row["positive recordings"]) == c["positive_recordings"]
        assert number(row["positive slices"]) == c["positives"]
        assert number(row["recording weight"]) == pytest.approx(c["recording_weight"], abs=5e-5)
        assert number(row["slice weight"]) == pytest.approx(c["weight"], abs=5e-5)
        # LWLRAP of a class without positives is undefined: n/a, not the 0.0 placeholder.
        for column, key, count in (("recording LWLRAP", "recording_lwlrap", "positive_recordings"),
                                   ("slice LWLRAP", "lwlrap", "positives")):
            assert number(row[column]) == (pytest.approx(c[key], abs=5e-5) if c[count] else None)


def test_outranked_counts_match_a_per_slice_loop():
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 6)) < 0.3).astype(float)
    scores = rng.integers(0, 4, size=(40, 6)).astype(float)  # many ties: "at or above" must count them
    counts, positives = confusion.outranked(truth, scores)
    expected = np.zeros((6, 6), int)
    for i in range(40):
        for t in np.flatnonzero(truth[i]):
            for k in np.flatnonzero(truth[i] == 0):
                expected[t, k] += scores[i, k] >= scores[i, t]
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(positives, truth.sum(axis=0))
    assert np.all(np.diag(counts) == 0)


def test_outranked_explains_lwlrap_of_single_label_slices():
    rng = np.random.default_rng(1)
    truth = np.eye(5)[rng.integers(0, 5, 30)]  # one true species per slice
    scores = rng.random((30, 5))
    counts, positives = confusion.outranked(truth, scores)
    per_class, _ = per_class_lwlrap(truth, scores)
    for t in range(5):
        rows = truth[:, t] == 1
        above = ((scores[rows] >= scores[rows, t:t + 1]) & (truth[rows] == 0)).sum(axis=1)
        assert above.sum() == counts[t].sum()
        assert per_class[t] == pytest.approx(np.mean(1.0 / (1.0 + above)))


def test_write_confusion_writes_png_of_the_oof_slices(tmp_path):
    rng = np.random.default_rng(2)
    oof = pd.DataFrame({"recording_id": [f"r{i}" for i in range(12)], "fold": 0, "kind": "tp"})
    for k in range(4):
        oof[f"y{k}"] = (np.arange(12) % 4 == k).astype(float)
        oof[f"s{k}"] = rng.random(12)
    path = confusion.write_confusion(*report_lib.truth_and_scores(oof), str(tmp_path / "confusion.png"))
    assert path == str(tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = np.array([[0, 3, 1], [2, 0, 0], [0, 0, 0]])
    assert confusion.top_pairs(counts, np.array([3, 2, 0]), limit=2) == [(0, 1, 3, 3), (1, 0, 2, 2)]
