"""The data dir's recordings: FLAC files found in any letter case, and how test/, sample_submission.csv
and the training CSVs relate to each other.

    train = flac_files(fs.join(data_dir, "train"))   # FlacFiles: {recording_id: path}
    test = flac_files(fs.join(data_dir, "test"))
    report = split_report(test.paths, read_submission_ids(path), train_ids)
    check_test_not_in_train(report, allow=False)               # UserError naming the shared ids

`X.FLAC` and `X.Flac` are found like `X.flac` (the extension is matched in any case), so an
upper-case test file is sharded instead of vanishing. A test file missing from sample_submission,
an id of sample_submission without a file, and a recording both in the test set and in the
training CSVs are reported; the last one is an error unless allowed, since training on test
recordings inflates every test score.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Iterable, Mapping

from core import fs
from core.errors import UserError
from pipeline import labels

EXTENSION = ".flac"
ID_COLUMN = "recording_id"
# How many ids an error or summary line names before "...".
SHOWN_IDS = 10


@dataclasses.dataclass(frozen=True)
class FlacFiles:
    """FLAC files of one directory by recording id (file stem)."""

    paths: Mapping[str, str]
    # Same stem in another case (x.flac and x.FLAC): one is used (lower case first), these are not.
    ignored: tuple[str, ...] = ()


def _stem_and_extension(path: str) -> tuple[str, str]:
    return os.path.splitext(path.rsplit("/", 1)[-1])


def flac_files(directory: str) -> FlacFiles:
    """Every file directly in `directory` whose extension is .flac in any case."""
    try:
        found = fs.glob(fs.join(directory, "*"))
    except OSError:  # no such directory: no files
        found = []
    by_stem: dict[str, list[str]] = {}
    for path in found:
        stem, ext = _stem_and_extension(path)
        if ext.lower() == EXTENSION:
            by_stem.setdefault(stem, []).append(path)
    paths, ignored = {}, []
    for stem, candidates in sorted(by_stem.items()):
        # Exact ".flac" first, then by name: deterministic whatever order the listing came in.
        candidates.sort(key=lambda p: (_stem_and_extension(p)[1] != EXTENSION, p))
        paths[stem] = candidates[0]
        ignored += candidates[1:]
    return FlacFiles(paths, tuple(ignored))


def read_submission_ids(path: str, num_classes: int | None = None) -> list[str]:
    """recording_id column of sample_submission.csv (stripped), in file order.

    With `num_classes`, also what trainer.inference.predict will require of it, so that the job stops before
    launch rather than predict after training: the header recording_id,s0..s{num_classes-1} and no
    recording listed twice."""
    table, _ = labels.read_text_csv(path, "sample_submission.csv")
    if ID_COLUMN not in table.columns:
        raise UserError(f"{path} has no {ID_COLUMN} column (its columns: {', '.join(map(str, table.columns))})")
    ids = [str(v).strip() for v in table[ID_COLUMN]]
    if num_classes is not None:
        check_submission_table(path, [str(c).strip() for c in table.columns], ids, num_classes)
    return ids


def check_submission_table(path: str, columns: list[str], ids: list[str], num_classes: int) -> None:
    """UserError unless the header is recording_id,s0..s{num_classes-1} and every id is listed once."""
    expected = [ID_COLUMN] + [f"s{k}" for k in range(num_classes)]
    if columns != expected:
        shown = ",".join(columns[:6]) + (",..." if len(columns) > 6 else "")
        raise UserError(f"{path} header is {shown} ({len(columns) - 1} score columns); expected recording_id,"
                        f"s0,...,s{num_classes - 1} (--num_classes {num_classes})")
    repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if repeated:
        raise UserError(f"{path} lists recordings more than once: {', '.join(repeated[:5])}")


@dataclasses.dataclass(frozen=True)
class SplitReport:
    """How the test files, sample_submission.csv and the training CSVs disagree (sorted ids)."""

    files_not_in_submission: tuple[str, ...]
    submission_without_file: tuple[str, ...]
    test_in_train: tuple[str, ...]  # in test/ or sample_submission and in train_tp/train_fp.csv

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def split_report(test_ids: Iterable[str], submission_ids: Iterable[str], train_ids: Iterable[str]) -> SplitReport:
    test, submission, train = set(test_ids), set(submission_ids), set(train_ids)
    return SplitReport(tuple(sorted(test - submission)), tuple(sorted(submission - test)),
                         tuple(sorted((test | submission) & train)))


def shown(ids: Iterable[str]) -> str:
    ids = list(ids)
    return ", ".join(ids[:SHOWN_IDS]) + (f" ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")


def check_test_not_in_train(report: SplitReport, allow: bool) -> None:
    """UserError when a test recording is also a training recording, unless `allow`."""
    if report.test_in_train and not allow:
        raise UserError(f"{len(report.test_in_train)} recording(s) of the test set (test/ or sample_submission.csv) "
                        f"are also in the training CSVs: {shown(report.test_in_train)}; training on them "
                        f"inflates every test score. Remove them, or pass --allow_test_in_train")


def summary_lines(report: SplitReport, ignored: Iterable[str]) -> list[str]:
    """Lines of the job's closing summary for what the report found (none when all agree)."""
    lines = []
    if report.test_in_train:
        lines.append(f"WARNING: {len(report.test_in_train)} test recording(s) are also trained on "
                     f"(--allow_test_in_train): {shown(report.test_in_train)}")
    if report.files_not_in_submission:
        lines.append(f"WARNING: {len(report.files_not_in_submission)} test file(s) not in sample_submission.csv "
                     f"(sharded, but a submission will not list them): {shown(report.files_not_in_submission)}")
    if report.submission_without_file:
        lines.append(f"WARNING: {len(report.submission_without_file)} id(s) of sample_submission.csv have no "
                     f"file in test/ (predict will refuse): {shown(report.submission_without_file)}")
    ignored = list(ignored)
    if ignored:
        lines.append(f"WARNING: {len(ignored)} file(s) ignored, same recording id as another file in another "
                     f"letter case: {shown(ignored)}")
    return lines
