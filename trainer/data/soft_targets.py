"""The pseudo-label sidecar: soft targets per window of the training slices (written by trainer.pseudo, read here).

The shards stay as written; a pseudo-label round (trainer.pseudo) scores every training slice's windows
with the out-of-fold model (the one model that never trained on the slice's recording) and writes a
CSV with one row per scored window:

    recording_id    the slice's recording
    fold            the recording's fold (the model that scored it validated on this fold)
    window_start    first sample of the window within the recording (the shards' slice_start + the
                    window's offset in the slice, at the shards' sample rate)
    window_samples  the window's length in samples
    s0 .. s{C-1}    the model's scores in [0, 1]

A run given `--soft_targets FILE` (TrainConfig.soft_targets) looks every training window up by its
recording and start: the row of the same recording whose start is nearest, if it is at most half a
window away (`SoftTargetLookup`). trainer.data.targets.combine_soft then takes those scores as the targets of
the species the window's boxes say nothing about. Validation never reads the sidecar.

    from trainer.data import soft_targets
    soft_targets.write(table, "runs/x/pseudo/round1/soft_targets.csv")    # pandas, the columns above
    table = soft_targets.read("runs/x/pseudo/round1/soft_targets.csv", num_classes=24)
    lookup = soft_targets.SoftTargetLookup(table)
    scores, found = lookup(recording_id, window_start)    # tf: [C] float32, [] float32 (1 = a row matched)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from core import fs
from core.errors import UserError

FILE = "soft_targets.csv"
ID, FOLD, START, LENGTH = "recording_id", "fold", "window_start", "window_samples"
SCORE_PREFIX = "s"


class SoftTargetsError(UserError):
    """A soft-target sidecar that is missing, malformed, or does not fit the training config."""


def score_columns(num_classes: int) -> list[str]:
    return [f"{SCORE_PREFIX}{c}" for c in range(num_classes)]


def write(table: pd.DataFrame, path: str) -> str:
    """Writes the sidecar (rows sorted by recording and window start); returns the path."""
    ordered = table.sort_values([ID, START], kind="stable").reset_index(drop=True)
    fs.write_csv(ordered, str(path))
    return str(path)


def read(path: str, num_classes: int) -> pd.DataFrame:
    """The sidecar at `path`, checked: its columns, num_classes scores per row, each in [0, 1]."""
    path = str(path)
    if not fs.isfile(path):
        raise SoftTargetsError(f"soft targets {path} not found; make them with `make pseudo` (trainer.pseudo)")
    try:
        table = fs.read_csv(path, dtype={ID: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SoftTargetsError(f"soft targets {path} are not a readable CSV ({e})") from e
    wanted = [ID, FOLD, START, LENGTH, *score_columns(num_classes)]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise SoftTargetsError(f"soft targets {path} lack columns {missing[:5]} (a sidecar of {num_classes} "
                               f"species has {ID},{FOLD},{START},{LENGTH},s0..s{num_classes - 1})")
    extra = [c for c in table.columns if c.startswith(SCORE_PREFIX) and c not in wanted]
    if extra:
        raise SoftTargetsError(f"soft targets {path} have scores of more species ({extra[:3]}...) than the "
                               f"config's {num_classes}")
    scores = table[score_columns(num_classes)].to_numpy(np.float64)
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise SoftTargetsError(f"soft targets {path} hold scores outside [0, 1]")
    if table.empty:
        raise SoftTargetsError(f"soft targets {path} hold no rows")
    return table


class SoftTargetLookup:
    """(recording_id tf.string [], window_start int64 []) -> (scores [C] float32, found float32 []), as TF ops.

    The sidecar's rows live in constant tensors; a hash table maps each recording to its rows (sorted by
    start), and the nearest start wins. No row of the recording, or none within half a window: scores
    0 and found 0 (the window keeps its box targets only).
    """

    def __init__(self, table: pd.DataFrame, num_classes: int | None = None) -> None:
        columns = (score_columns(num_classes) if num_classes is not None
                   else [c for c in table.columns if c.startswith(SCORE_PREFIX)])
        table = table.sort_values([ID, START], kind="stable").reset_index(drop=True)
        ids = table[ID].astype(str).to_numpy()
        names, first = np.unique(ids, return_index=True)  # sorted, so each recording's rows are contiguous
        counts = np.diff(np.append(first, len(ids)))
        self.num_classes = len(columns)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(names.astype(object), tf.string),
                                                tf.range(len(names), dtype=tf.int64)), default_value=-1)
        self._first = tf.constant(first, tf.int64)  # [R]
        self._count = tf.constant(counts, tf.int64)  # [R]
        self._starts = tf.constant(table[START].to_numpy(np.int64))  # [N]
        self._reach = tf.constant(table[LENGTH].to_numpy(np.int64) // 2)  # [N] half a window
        self._scores = tf.constant(table[columns].to_numpy(np.float32))  # [N, C]

    def __call__(self, recording_id: tf.Tensor, window_start: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        row = self._table.lookup(recording_id)  # [] int64, -1 if unknown
        known = row >= 0
        row = tf.maximum(row, 0)
        first, count = self._first[row], self._count[row]
        starts = self._starts[first:first + count]  # [k]
        distance = tf.abs(starts - tf.cast(window_start, tf.int64))  # [k]
        nearest = first + tf.argmin(distance, output_type=tf.int64)
        found = known & (tf.reduce_min(distance) <= self._reach[nearest])
        scores = tf.where(found, self._scores[nearest], tf.zeros([self.num_classes], tf.float32))  # [C]
        return scores, tf.cast(found, tf.float32)


def lookup_for(path: str, num_classes: int) -> SoftTargetLookup:
    """The lookup of the sidecar at `path` (read and checked)."""
    return SoftTargetLookup(read(path, num_classes), num_classes)
