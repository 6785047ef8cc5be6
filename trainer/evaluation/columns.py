"""The per-class column names of every table the trainer writes or reads (one place for them).

val_predictions.csv, the CV and baseline oof.csv and the submission name one column per class C
with a prefix and the class index: y0..y{C-1} labels, w0..w{C-1} loss weights, s0..s{C-1} scores
(the RFCX submission's species columns), next to `recording_id`.

    from trainer.evaluation import columns
    columns.score_columns(3)                       # ["s0", "s1", "s2"]
    columns.class_columns(3, columns.WEIGHT)       # ["w0", "w1", "w2"]
    columns.find(table.columns, columns.LABEL)     # the y<k> columns of a table, in class order
"""
from __future__ import annotations

from typing import Iterable

ID = "recording_id"
LABEL, WEIGHT, SCORE = "y", "w", "s"


def class_columns(num_classes: int, prefix: str) -> list[str]:
    """[prefix0, ..., prefix{C-1}]."""
    return [f"{prefix}{c}" for c in range(num_classes)]


def label_columns(num_classes: int) -> list[str]:
    return class_columns(num_classes, LABEL)


def weight_columns(num_classes: int) -> list[str]:
    return class_columns(num_classes, WEIGHT)


def score_columns(num_classes: int) -> list[str]:
    """["s0", ..., "s{C-1}"], the species columns of the RFCX submission."""
    return class_columns(num_classes, SCORE)


def find(names: Iterable[str], prefix: str) -> list[str]:
    """The names `prefix<k>` among `names` (k a class index), sorted by k."""
    found = [n for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return sorted(found, key=lambda n: int(n[len(prefix):]))
