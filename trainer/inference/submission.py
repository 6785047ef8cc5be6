"""Window scores -> recording scores -> fold ensemble -> Kaggle submission table (pure numpy/pandas).

Aggregation is "max then mean": a recording's score for a species is the max over its windows
(a call anywhere in the recording counts), and several runs (e.g. the CV folds) are averaged.
The submission has the header `recording_id,s0,...,s{C-1}` and exactly the recordings of
sample_submission.csv, in its order; `check_submission` enforces that before anything is written.

    from trainer.inference import submission
    rec = submission.max_per_recording(window_scores, owner, num_recordings)   # [R, C]
    ens = submission.mean_over_runs([rec_run1, rec_run2])                       # [R, C]
    sample = submission.read_sample_submission("data/shards/demo", num_classes=24)   # local or gs://
    table = submission.build_submission(recording_ids, ens, sample)
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from core import fs
from core import manifest as shards_layout
from core.errors import UserError
from core.manifest import Manifest
from trainer.evaluation.columns import ID as ID_COLUMN
from trainer.evaluation.columns import score_columns


class SubmissionError(UserError):
    """Scores that do not make a valid submission (missing/extra recordings, wrong header, ...)."""


def _names(ids: Sequence[str], limit: int = 5) -> str:
    """A short, sorted list of recording ids for an error message."""
    ids = sorted(ids)
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def max_per_recording(window_scores: np.ndarray, owner: np.ndarray, num_recordings: int) -> np.ndarray:
    """float [W, C] window scores + int [W] recording index of each window -> float32 [R, C] max.

    Every recording 0..R-1 must own at least one window (a recording with none would silently get
    no score).
    """
    scores = np.asarray(window_scores, dtype=np.float32)
    owner = np.asarray(owner, dtype=np.int64)
    if scores.ndim != 2 or owner.shape != (scores.shape[0],):
        raise ValueError(f"window_scores {scores.shape} and owner {owner.shape} do not match")
    if owner.size and (owner.min() < 0 or owner.max() >= num_recordings):
        raise ValueError(f"owner indices must be in [0, {num_recordings})")
    counts = np.bincount(owner, minlength=num_recordings)
    if np.any(counts == 0):
        raise ValueError(f"recordings without windows: {np.flatnonzero(counts == 0).tolist()}")
    out = np.full((num_recordings, scores.shape[1]), -np.inf, dtype=np.float32)
    np.maximum.at(out, owner, scores)  # unbuffered, so repeated owners all count
    return out


def mean_over_runs(run_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Sequence of float [R, C] (one per run, same recordings in the same order) -> float32 [R, C]."""
    if not run_scores:
        raise ValueError("no run scores to average")
    shapes = {np.shape(s) for s in run_scores}
    if len(shapes) != 1:
        raise ValueError(f"runs disagree on the score shape: {sorted(shapes)}")
    return np.mean(np.stack([np.asarray(s, dtype=np.float32) for s in run_scores]), axis=0)


def read_score_table(path: str) -> pd.DataFrame:
    """Reads a table shaped like sample_submission.csv (also test_truth.csv, a submission).

    Checks the header is recording_id,s0..s{C-1} and that no recording is listed twice.
    """
    path = str(path)
    if not fs.isfile(path):
        raise SubmissionError(f"{path} not found")
    try:
        sample = fs.read_csv(path, dtype={ID_COLUMN: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SubmissionError(f"{path} is not a readable CSV: {e}") from e
    num_classes = len(sample.columns) - 1
    expected = [ID_COLUMN] + score_columns(num_classes)
    if list(sample.columns) != expected or num_classes < 1:
        raise SubmissionError(f"{path} header is {list(sample.columns)}; expected recording_id,s0,...")
    duplicated = sample[ID_COLUMN][sample[ID_COLUMN].duplicated()].unique().tolist()
    if duplicated:
        raise SubmissionError(f"{path} lists recordings more than once: {_names(duplicated)}")
    return sample


def read_sample_submission(shards_dir: str, num_classes: int) -> pd.DataFrame:
    """The shards dir's sample_submission.csv (copied there by the shards job), with `num_classes` species."""
    path = fs.join(str(shards_dir), shards_layout.SAMPLE_SUBMISSION)
    if not fs.isfile(path):
        raise UserError(f"{shards_dir} has no {shards_layout.SAMPLE_SUBMISSION} (the shards job copies it from "
                        f"the data dir)")
    sample = read_score_table(path)
    if len(sample.columns) - 1 != num_classes:
        raise UserError(f"{path} has {len(sample.columns) - 1} species columns but the shards have "
                        f"{num_classes} classes")
    return sample


def check_recordings(
    recording_ids: Sequence[str], sample: pd.DataFrame, what: str, reference: str = "sample_submission.csv"
) -> None:
    """Raises SubmissionError naming the recordings `what` (e.g. "the test shards") repeats, lacks or
    adds compared with the rows of `sample` (called `reference` in the message)."""
    expected, got = list(sample[ID_COLUMN]), list(recording_ids)
    duplicated = [r for r, n in Counter(got).items() if n > 1]
    if duplicated:
        raise SubmissionError(f"{what} hold recordings more than once: {_names(duplicated)}")
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    if missing:
        raise SubmissionError(
            f"{what} lack {len(missing)} recording(s) of {reference}: {_names(missing)}"
        )
    if extra:
        raise SubmissionError(
            f"{what} hold {len(extra)} recording(s) not in {reference}: {_names(extra)}"
        )


def check_test_recordings(recording_ids: Sequence[str], sample: pd.DataFrame, shards_dir: str,
                          manifest: Manifest) -> None:
    """check_recordings for the test shards of `shards_dir`, naming the test files the shards job rejected."""
    try:
        check_recordings(recording_ids, sample, f"the test shards of {shards_dir}")
    except SubmissionError as e:
        rejected = manifest.test_rejected
        hint = f" ({rejected} test file(s) were rejected by the shards job, see rejected/)" if rejected else ""
        raise SubmissionError(f"{e}{hint}") from e


def build_submission(recording_ids: Sequence[str], scores: np.ndarray, sample: pd.DataFrame) -> pd.DataFrame:
    """Scores [R, C] of `recording_ids` -> submission table in sample_submission's row order."""
    scores = np.asarray(scores, dtype=np.float32)
    num_classes = len(sample.columns) - 1
    if scores.shape != (len(recording_ids), num_classes):
        raise SubmissionError(
            f"scores have shape {scores.shape}; sample_submission.csv needs "
            f"({len(recording_ids)}, {num_classes}) (recordings, species)"
        )
    check_recordings(recording_ids, sample, "the scored recordings")
    table = pd.DataFrame(scores, columns=score_columns(num_classes))
    table.insert(0, ID_COLUMN, list(recording_ids))
    table = table.set_index(ID_COLUMN).loc[list(sample[ID_COLUMN])].reset_index()
    check_submission(table, sample)
    return table


def check_submission(table: pd.DataFrame, sample: pd.DataFrame) -> None:
    """The final gate before writing: same header, same recordings in the same order, finite scores."""
    if list(table.columns) != list(sample.columns):
        raise SubmissionError(f"submission header {list(table.columns)} differs from {list(sample.columns)}")
    check_recordings(list(table[ID_COLUMN]), sample, "the submission")
    order = table[ID_COLUMN].to_numpy() != sample[ID_COLUMN].to_numpy()
    if order.any():
        first = int(np.flatnonzero(order)[0])
        raise SubmissionError(
            f"submission row {first} is {table[ID_COLUMN].iloc[first]}, sample_submission.csv has "
            f"{sample[ID_COLUMN].iloc[first]} there"
        )
    values = table[list(sample.columns[1:])].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise SubmissionError(f"non-finite scores for: {_names(table[ID_COLUMN][bad].tolist())}")


def write_submission(table: pd.DataFrame, path: str) -> str:
    """Writes the table as CSV (parent dirs created) and returns the path."""
    fs.write_csv(table, str(path))
    return str(path)


def align_truth(table: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Submission + ground truth in the same layout (test_truth.csv) -> (truth, scores), both [R, C].

    Truth rows are reordered to the submission's; both must list the same recordings and columns.
    """
    if list(truth.columns) != list(table.columns):
        raise SubmissionError(f"ground-truth header {list(truth.columns)} differs from {list(table.columns)}")
    check_recordings(list(truth[ID_COLUMN]), table, "the ground truth", "the submission")
    species = list(table.columns[1:])
    aligned = truth.set_index(ID_COLUMN).loc[list(table[ID_COLUMN]), species]
    return aligned.to_numpy(dtype=np.float64), table[species].to_numpy(dtype=np.float64)
