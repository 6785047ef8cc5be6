"""The shards a training run reads: manifest, fold split by slice kind, up-front checks.

Training reads the shards of every fold but K (by slice kind: tp, fp, background), validation every
shard of fold K (paths from OUT/manifest.json). Before anything is built, `prepare_fold` checks the
manifest, every file's framing (a corrupt TFRecord is named) and the first record of each file
(schema version, sample rate), and that the window fits the slices; each is a UserError with what
exists. The tf.data graphs over these files are in trainer.inputs.

    from trainer import data
    fold_inputs = data.prepare_fold("data/shards/demo", fold=0, cfg=cfg)
    fold_inputs.train_files_by_kind["tp"], fold_inputs.num_train_by_kind["fp"], fold_inputs.val_files
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from pipeline import schema
from pipeline.errors import UserError
from trainer import mel
from trainer.config import TrainConfig

MANIFEST = "manifest.json"
NEGATIVE_KINDS = (schema.KIND_FP, schema.KIND_BACKGROUND)
_READ_BUFFER = 8 << 20


class ShardsError(UserError):
    """The shards dir, its manifest or a shard file cannot be used for training."""


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What the up-front pass learnt about one TFRecord file."""

    path: str
    num_records: int
    schema_version: int
    sample_rate: int


@dataclasses.dataclass(frozen=True)
class FoldInputs:
    """The checked shard files of one cross-validation split."""

    shards_dir: str
    fold: int
    train_files: tuple[str, ...]  # every kind
    val_files: tuple[str, ...]  # every kind
    num_train: int
    num_val: int
    manifest: dict[str, Any]
    train_files_by_kind: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    num_train_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)


def window_samples(cfg: TrainConfig) -> int:
    return int(round(cfg.window_seconds * cfg.mel.sample_rate))


def input_shape(cfg: TrainConfig) -> tuple[int, int, int]:
    """Model input (n_mels, frames, 1) for the configured window: 10 s at 48 kHz, hop 512 -> (128, 938, 1)."""
    return cfg.mel.n_mels, mel.num_frames(window_samples(cfg), cfg.mel), 1


# ---- manifest and files ----

def _listing(path: str) -> str:
    try:
        names = sorted(tf.io.gfile.listdir(path))
    except tf.errors.OpError:
        return "(cannot list it)"
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "(empty)"


# What readers of the manifest (here, trainer.runs, trainer.recordings) rely on.
MANIFEST_KEYS = ("schema_version", "num_classes", "sample_rate", "slice_seconds", "num_folds", "files", "counts")


def read_manifest(shards_dir: str) -> dict[str, Any]:
    """OUT/manifest.json of a finished shards job (its presence means the job finished)."""
    if not tf.io.gfile.isdir(shards_dir):
        raise ShardsError(f"shards dir {shards_dir} does not exist; build it with `make shards` "
                          f"(or pass --shards_dir of an existing one)")
    path = os.path.join(shards_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise ShardsError(f"{shards_dir} has no {MANIFEST}, so it is not a finished shards dir (it holds: "
                          f"{_listing(shards_dir)}); run `make shards` and wait for it to finish")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            manifest = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardsError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise ShardsError(f"{path} must hold a JSON object, got {type(manifest).__name__}; re-run `make shards`")
    schema.check_version(manifest.get("schema_version", -1), path)
    missing = sorted(set(MANIFEST_KEYS) - set(manifest))
    if missing:
        raise ShardsError(f"{path} lacks {', '.join(missing)}; it was not written by a finished `make shards`")
    return manifest


def fold_files(manifest: dict[str, Any], shards_dir: str, fold: int) -> tuple[list[str], list[str]]:
    """(train files = every fold but `fold`, val files = `fold`), absolute, in manifest order."""
    by_fold = manifest.get("files", {}).get("train", {})
    with_shards = sorted(int(k) for k, v in by_fold.items() if v)
    counts = manifest.get("counts", {}).get("train_examples_per_fold", {})
    described = ", ".join(f"{k} ({counts.get(str(k), '?')} examples)" for k in with_shards) or "none"
    if str(fold) not in by_fold:
        raise ShardsError(f"unknown fold {fold}: {shards_dir} has folds 0..{len(by_fold) - 1}; "
                          f"folds with shards: {described}")
    if not by_fold[str(fold)]:
        raise ShardsError(f"{shards_dir} has no shard for fold {fold} (no examples fell into it); "
                          f"folds with shards: {described}")
    train = [os.path.join(shards_dir, p) for k in sorted(by_fold, key=int) if k != str(fold)
             for p in by_fold[k]]
    if not train:
        raise ShardsError(f"{shards_dir} has no training shards outside fold {fold}; folds with shards: "
                          f"{described}")
    val = [os.path.join(shards_dir, p) for p in by_fold[str(fold)]]
    missing = [p for p in train + val if not tf.io.gfile.exists(p)]
    if missing:
        raise ShardsError(f"{len(missing)} shard file(s) listed in {shards_dir}/{MANIFEST} are missing, "
                          f"e.g. {missing[0]}; re-run `make shards`")
    return train, val


def train_files_by_kind(manifest: dict[str, Any], shards_dir: str, fold: int) -> dict[str, list[str]]:
    """{slice kind: files of every fold but `fold`} from the manifest's train_by_kind lists."""
    by_kind = manifest.get("files", {}).get("train_by_kind")
    if not isinstance(by_kind, dict):
        raise ShardsError(f"{shards_dir}/{MANIFEST} has no files.train_by_kind; re-run `make shards`")
    return {kind: [os.path.join(shards_dir, p) for k in sorted(by_kind, key=int) if k != str(fold)
                   for p in by_kind[k].get(kind, [])] for kind in schema.SLICE_KINDS}


# Up-front scans keyed by (path, size, mtime): trainer.cv trains several folds in one process and
# each file is read through once, not once per fold. A changed file is scanned again.
_SCANNED: dict[tuple[str, int, int], ShardInfo] = {}


def _first_record_fields(record: tf.Tensor) -> tuple[int, int]:
    """schema_version and sample_rate of a serialized example, of any schema version."""
    spec = {"schema_version": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    parsed = tf.io.parse_single_example(record, spec)
    return int(parsed["schema_version"]), int(parsed["sample_rate"])


def tf_error_reason(error: tf.errors.OpError) -> str:
    """The gist of a TF error: "corrupted record at 12" without the op and function names around it."""
    text = re.sub(r"\{\{[^}]*\}\}", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", text).strip(" '") or type(error).__name__


def scan_shard(path: str, use_cache: bool = True) -> ShardInfo:
    """Reads `path` through once (TFRecord length and CRC checks): record count and first record fields.

    Raises ShardsError naming the file when it is corrupt, truncated or empty.
    """
    stat = tf.io.gfile.stat(path)
    key = (path, int(stat.length), int(stat.mtime_nsec))
    if use_cache and key in _SCANNED:
        return _SCANNED[key]
    dataset = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER)
    try:
        first = next(iter(dataset.take(1)), None)
        count = int(dataset.reduce(np.int64(0), lambda n, _: n + 1))
        version, rate = _first_record_fields(first) if first is not None else (-1, -1)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise ShardsError(f"shard {path} is corrupt ({tf_error_reason(e)}); re-run `make shards` or restore "
                          f"the file") from e
    if count == 0:
        raise ShardsError(f"shard {path} holds no records; re-run `make shards`")
    info = ShardInfo(path, count, version, rate)
    _SCANNED[key] = info
    return info


def scan_shards(paths: Sequence[str], use_cache: bool = True) -> list[ShardInfo]:
    """scan_shard over many files, a few at a time (reads are I/O bound, gs:// especially)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda p: scan_shard(p, use_cache), paths))


def find_corrupt_shard(paths: Sequence[str]) -> str | None:
    """Re-reads every file (no cache) and returns the ShardsError message of the first bad one."""
    for path in paths:
        try:
            scan_shard(path, use_cache=False)
        except ShardsError as e:
            return str(e)
    return None


def check_compatible(manifest: dict[str, Any], infos: Sequence[ShardInfo], cfg: TrainConfig,
                     shards_dir: str) -> None:
    """The shards must be of this schema version, sample rate and class count, with slices >= window."""
    for info in infos:
        schema.check_version(info.schema_version, f"shard {info.path}")
        if info.sample_rate != cfg.mel.sample_rate:
            raise ShardsError(f"shard {info.path} holds {info.sample_rate} Hz audio but the config reads "
                              f"{cfg.mel.sample_rate} Hz (--mel.sample_rate); use matching shards or config")
    if int(manifest["num_classes"]) != cfg.num_classes:
        raise ShardsError(f"{shards_dir} has {manifest['num_classes']} classes but the config has "
                          f"num_classes={cfg.num_classes}; pass --num_classes {manifest['num_classes']}")
    slice_seconds = float(manifest["slice_seconds"])
    if cfg.window_seconds > slice_seconds:
        raise ShardsError(f"window_seconds={cfg.window_seconds} is longer than the {slice_seconds} s slices of "
                          f"{shards_dir}; pass --window_seconds {slice_seconds:g} or less, or re-shard with "
                          f"--slice_seconds {cfg.window_seconds:g}")


def prepare_fold(shards_dir: str, fold: int, cfg: TrainConfig) -> FoldInputs:
    """Finds and checks the shards of one split; every user mistake is a ShardsError/SchemaError."""
    manifest = read_manifest(shards_dir)
    train, val = fold_files(manifest, shards_dir, fold)
    by_kind = train_files_by_kind(manifest, shards_dir, fold)
    infos = scan_shards(train + val)
    check_compatible(manifest, infos, cfg, shards_dir)
    records = {i.path: i.num_records for i in infos}
    n_train = sum(records[p] for p in train)
    n_val = sum(records[p] for p in val)
    n_by_kind = {kind: sum(records[p] for p in files) for kind, files in by_kind.items()}
    if not by_kind[schema.KIND_TP]:
        raise ShardsError(f"{shards_dir} has no tp slices outside fold {fold}, so there is nothing to learn from")
    return FoldInputs(shards_dir, fold, tuple(train), tuple(val), n_train, n_val, manifest,
                      {k: tuple(v) for k, v in by_kind.items()}, n_by_kind)
