"""Hand-made shards dirs for trainer tests: train examples written with the shared schema.

Unlike the `tiny_shards` fixture (a real Beam run over demo audio), these give a test exact
control over audio, events, labels and folds, e.g. a ramp waveform whose sample values reveal
where a crop started.

    ex = train_example("rec0", fold=0, species=3, t_min=0.4, t_max=0.6, audio=ramp(32000))
    shards_dir = write_shards(tmp_path, {0: [ex, ...], 1: [...]}, sample_rate=16000, slice_seconds=2.0)
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from core import manifest as layout
from core import schema


def ramp(n: int) -> np.ndarray:
    """int16 [n] with sample i equal to i (n <= 32767): a crop's first value is its offset."""
    assert n <= 32767
    return np.arange(n, dtype=np.int16)


def train_example(recording_id: str, fold: int, species: int, t_min: float, t_max: float, audio: np.ndarray,
                  sample_rate: int = 16000, num_classes: int = 24, row_index: int = 0, slice_start: int = 0,
                  extra_species: Sequence[int] = (), version: int = schema.SCHEMA_VERSION,
                  kind: str = schema.KIND_TP, fp_species: Sequence[int] = ()) -> dict[str, Any]:
    """Values of every TRAIN_FIELDS feature for one slice.

    kind "tp": `labels` is multi-hot of species + extra_species, each a tp box at [t_min, t_max].
    kind "fp": `species` (and extra_species) are fp boxes there: labels 0, known 1.
    kind "background": no event (species -1, the whole slice); boxes only from `fp_species`.
    fp_species add fp boxes at [t_min, t_max] (known negatives) to any kind.
    """
    labels = np.zeros(num_classes, np.float32)
    known = np.zeros(num_classes, np.float32)
    if kind == schema.KIND_BACKGROUND:
        tp_ids: list[int] = []
        fp_ids = list(fp_species)
        species, t_min, t_max = -1, 0.0, len(audio) / sample_rate
        row_index = schema.NO_ROW
    elif kind == schema.KIND_FP:
        tp_ids, fp_ids = [], [species, *extra_species, *fp_species]
    else:
        tp_ids, fp_ids = [species, *extra_species], list(fp_species)
    labels[tp_ids] = 1.0
    known[tp_ids + fp_ids] = 1.0
    species_ids = tp_ids + fp_ids
    is_tp = [1] * len(tp_ids) + [0] * len(fp_ids)
    return {
        "schema_version": version, "recording_id": recording_id, "audio": schema.pcm16_to_bytes(audio),
        "sample_rate": sample_rate, "num_samples": len(audio), "source/sample_rate": sample_rate,
        "source/channels": 1, "source/resampled": 0, "source/clipped_samples": 0, "source/nonfinite_samples": 0,
        "row_index": row_index, "recording_num_samples": len(audio) + slice_start, "slice_start": slice_start,
        "fold": fold, "event/species_id": species, "event/songtype_id": 1, "event/t_min": t_min,
        "event/t_max": t_max, "event/f_min": 500.0, "event/f_max": 2000.0,
        "boxes/species_id": species_ids, "boxes/songtype_id": [1] * len(species_ids),
        "boxes/t_min": [t_min] * len(species_ids), "boxes/t_max": [t_max] * len(species_ids),
        "boxes/f_min": [500.0] * len(species_ids), "boxes/f_max": [2000.0] * len(species_ids),
        "boxes/is_tp": is_tp, "labels": labels, "label_known": known, "kind": kind,
    }


def write_records(path: str, examples: Sequence[dict[str, Any]]) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for values in examples:
            writer.write(schema.make_example(schema.TRAIN_FIELDS, values).SerializeToString())


def write_shards(out_dir: str, by_fold: dict[int, Sequence[dict[str, Any]]], sample_rate: int = 16000,
                 slice_seconds: float = 2.0, num_classes: int = 24, files_per_fold: int = 1,
                 manifest_version: int = schema.SCHEMA_VERSION) -> str:
    """Writes OUT/train/fold-K/<kind>-*.tfrecord and OUT/manifest.json (the pipeline's layout); returns OUT.

    Each slice kind of a fold goes to its own files (`files_per_fold` of each kind at most), as the job does.
    """
    out_dir = str(out_dir)
    files: dict[str, list[str]] = {}
    by_kind: dict[str, dict[str, list[str]]] = {}
    per_kind_counts: dict[str, dict[str, int]] = {}
    for fold, examples in sorted(by_fold.items()):
        files[str(fold)] = []
        by_kind[str(fold)] = {k: [] for k in schema.SLICE_KINDS}
        per_kind_counts[str(fold)] = {k: 0 for k in schema.SLICE_KINDS}
        for kind in schema.SLICE_KINDS:
            of_kind = [e for e in examples if e["kind"] == kind]
            per_kind_counts[str(fold)][kind] = len(of_kind)
            for i in range(files_per_fold):
                chunk = of_kind[i::files_per_fold]
                if not chunk:
                    continue
                rel = layout.shard_name(layout.train_prefix(fold, kind), i, files_per_fold)
                write_records(os.path.join(out_dir, rel), chunk)
                files[str(fold)].append(rel)
                by_kind[str(fold)][kind].append(rel)
    manifest = {
        "schema_version": manifest_version, "num_classes": num_classes, "sample_rate": sample_rate,
        "slice_seconds": slice_seconds, "num_folds": len(by_fold), "fold_seed": 0,
        "files": {"train": files, "train_by_kind": by_kind, "test": []},
        "counts": {"train_examples": sum(len(v) for v in by_fold.values()),
                   "train_examples_per_fold": {str(k): len(v) for k, v in by_fold.items()},
                   "train_examples_per_fold_kind": per_kind_counts},
    }
    with open(os.path.join(out_dir, layout.MANIFEST_FILE), "w") as f:
        json.dump(manifest, f)
    return out_dir


# ---- a small three-kind dataset shared by the trainer's input tests ----

TP_SPECIES, FP_SPECIES, BACKGROUND_SPECIES = 0, 10, 20  # + fold: the species reveals a slice's fold
VAL_EVENTS = [(0.1, 0.2), (0.9, 1.1), (1.8, 1.95)]  # fold 0's tp events: near the start, middle, end
FP_EVENT = (0.5, 0.7)


def fold_of_species(species: int) -> int:
    return species % 10


def three_kind_folds(num_folds: int = 3, per_fold: int = 4, negatives_per_fold: int = 2, sample_rate: int = 16000,
                     slice_samples: int = 32000) -> dict[int, list[dict[str, Any]]]:
    """Per fold k: tp slices of species k, fp slices of species 10 + k, background slices with a known
    negative 20 + k (an fp box over the whole slice), all of ramp audio, so any window's targets tell
    its fold and kind. Fold 0 has the VAL_EVENTS tp slices plus one 0.75 s tp slice (shorter than a
    1 s window); row_index is 10 k + i (tp), 100 + 10 k + i (fp), -1 (background).
    """
    by_fold: dict[int, list[dict[str, Any]]] = {}
    audio = ramp(slice_samples)
    for k in range(num_folds):
        events = VAL_EVENTS if k == 0 else [(0.2 + 0.3 * i, 0.5 + 0.3 * i) for i in range(per_fold)]
        examples = [train_example(f"rec{k}_{i}", k, species=TP_SPECIES + k, t_min=a, t_max=b, audio=audio,
                                  sample_rate=sample_rate, row_index=10 * k + i) for i, (a, b) in enumerate(events)]
        count = 1 if k == 0 else negatives_per_fold
        for i in range(count):
            examples.append(train_example(f"rec{k}_{i}", k, species=FP_SPECIES + k, t_min=FP_EVENT[0],
                                          t_max=FP_EVENT[1], audio=audio, sample_rate=sample_rate,
                                          row_index=100 + 10 * k + i, kind=schema.KIND_FP))
            examples.append(train_example(f"rec{k}_{i}", k, species=-1, t_min=0.0, t_max=0.0, audio=audio,
                                          sample_rate=sample_rate, kind=schema.KIND_BACKGROUND,
                                          fp_species=[BACKGROUND_SPECIES + k], slice_start=slice_samples))
        if k == 0:
            examples.append(train_example("short", 0, species=TP_SPECIES, t_min=0.2, t_max=0.4,
                                          audio=ramp(12000), sample_rate=sample_rate, row_index=9))
        by_fold[k] = examples
    return by_fold
