"""Cross-validation folds by recording, stratified by species.

The seed split rows with StratifiedKFold, so events of one recording landed in both train and
validation. Here all rows of a recording share a fold (StratifiedGroupKFold, groups = recording)
while species stay balanced across folds; same rows + same seed => same folds.

    fold_of = assign_folds(recording_ids, species_ids, num_folds=5, seed=27)  # {recording_id: fold}
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from core.errors import UserError


def assign_folds(recording_ids: Sequence[str], species: Sequence[object], num_folds: int,
                 seed: int) -> dict[str, int]:
    """Maps each recording to a fold 0..num_folds-1, one entry per distinct recording.

    `species` (one per row, any hashable label) is the stratification target; when no species has
    as many rows as there are folds, the split is by recording only. Raises UserError when
    there are fewer distinct recordings than folds.
    """
    groups = np.asarray(recording_ids, dtype=object)
    distinct = len(set(recording_ids))
    if distinct < num_folds:
        raise UserError(f"train_tp.csv and train_fp.csv name {distinct} distinct recordings, too few for "
                        f"{num_folds} folds; lower --num_folds")
    y = np.asarray([str(s) for s in species], dtype=object)
    _, counts = np.unique(y, return_counts=True)
    if counts.max() >= num_folds:
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    else:
        # No species has a row per fold (tiny datasets): stratifying is impossible, group only.
        splitter = GroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    fold_of: dict[str, int] = {}
    with warnings.catch_warnings():
        # Rare species (fewer rows than folds) cannot be in every fold; that is expected, not news.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            for rid in groups[val_idx]:
                fold_of[rid] = k
    return fold_of
