"""The shards a training run reads: manifest, fold split by slice kind, up-front checks.

Training reads the shards of every fold but K (by slice kind: tp, fp, background), validation every
shard of fold K (paths from OUT/manifest.json, read through core.fs as a typed
core.manifest.Manifest; example counts come from its counters, not from reading the shards).
Before anything is built, `prepare_fold` checks the manifest, that every listed file exists and the
first record of each file (framing and CRC, schema version, sample rate), and that the window fits
the slices; each is a UserError with what exists. A file damaged further in is found where the data
is read: on a tf.errors.DataLossError, `find_corrupt_shard` re-reads the files and names it. The
tf.data graphs over these files are in trainer.data.inputs.

    from trainer.data import discovery
    fold_inputs = discovery.prepare_fold("data/shards/demo", fold=0, cfg=cfg)
    fold_inputs.train_files_by_kind["tp"], fold_inputs.num_train_by_kind["fp"], fold_inputs.val_files
    with discovery.naming_corrupt_shard(path):        # DataLossError -> ShardsError naming `path`
        ...read path...
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from core import fs, schema
from core.manifest import MANIFEST_FILE, Manifest, ManifestError
from trainer.data import records
from trainer.data.records import (  # noqa: F401
    ShardsError,
    corrupt_shard_error,
    naming_corrupt_shard,
    tf_error_reason,
)
from trainer.features import mel
from trainer.recipe.config import TrainConfig

MANIFEST = MANIFEST_FILE
NEGATIVE_KINDS = (schema.KIND_FP, schema.KIND_BACKGROUND)


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What the first record of one TFRecord file says."""

    path: str
    schema_version: int
    sample_rate: int


@dataclasses.dataclass(frozen=True)
class FoldInputs:
    """The checked shard files of one cross-validation split (counts from the manifest)."""

    shards_dir: str
    fold: int
    train_files: tuple[str, ...]  # every kind
    val_files: tuple[str, ...]  # every kind
    num_train: int
    num_val: int
    manifest: Manifest
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
        names = fs.listdir(path)
    except OSError:
        return "(cannot list it)"
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "(empty)"


def read_manifest(shards_dir: str) -> Manifest:
    """OUT/manifest.json of a finished shards job (its presence means the job finished), typed."""
    shards_dir = str(shards_dir)
    if not fs.isdir(shards_dir):
        raise ShardsError(f"shards dir {shards_dir} does not exist; build it with `make shards` "
                          f"(or pass --shards_dir of an existing one)")
    path = fs.join(shards_dir, MANIFEST)
    if not fs.exists(path):
        raise ShardsError(f"{shards_dir} has no {MANIFEST}, so it is not a finished shards dir (it holds: "
                          f"{_listing(shards_dir)}); run `make shards` and wait for it to finish")
    try:
        content = fs.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardsError(f"{path} is not valid JSON: {e}") from e
    try:
        return Manifest.from_dict(content, where=path)
    except ManifestError as e:
        raise ShardsError(str(e)) from e


def absolute(shards_dir: str, relative: Sequence[str]) -> list[str]:
    """Manifest paths (relative to OUT) -> paths under `shards_dir` (local or URL)."""
    return [fs.join(shards_dir, p) for p in relative]


def check_exist(paths: Sequence[str], shards_dir: str) -> None:
    missing = fs.missing(paths)
    if missing:
        raise ShardsError(f"{len(missing)} shard file(s) listed in {fs.join(shards_dir, MANIFEST)} are missing, "
                          f"e.g. {missing[0]}; re-run `make shards`")


def _fold_count(manifest: Manifest, fold: int, kind: str | None = None) -> int:
    value = manifest.examples(fold, kind)
    if value is None:
        raise ShardsError(f"the manifest lacks the example count of fold {fold}{'' if kind is None else ' ' + kind}; "
                          f"re-run `make shards`")
    return value


def fold_files(manifest: Manifest, shards_dir: str, fold: int) -> tuple[list[str], list[str]]:
    """(train files = every fold but `fold`, val files = `fold`), absolute, in manifest order."""
    with_shards = manifest.folds_with_shards()
    counts = manifest.counts.get("train_examples_per_fold", {})
    described = ", ".join(f"{k} ({counts.get(str(k), '?')} examples)" for k in with_shards) or "none"
    if fold not in manifest.train:
        raise ShardsError(f"unknown fold {fold}: {shards_dir} has folds 0..{len(manifest.train) - 1}; "
                          f"folds with shards: {described}")
    if not manifest.train_files(fold):
        raise ShardsError(f"{shards_dir} has no shard for fold {fold} (no examples fell into it); "
                          f"folds with shards: {described}")
    train = absolute(shards_dir, [p for k in sorted(manifest.train) if k != fold for p in manifest.train_files(k)])
    if not train:
        raise ShardsError(f"{shards_dir} has no training shards outside fold {fold}; folds with shards: "
                          f"{described}")
    val = absolute(shards_dir, manifest.train_files(fold))
    check_exist(train + val, shards_dir)
    return train, val


def train_files_by_kind(manifest: Manifest, shards_dir: str, fold: int) -> dict[str, list[str]]:
    """{slice kind: files of every fold but `fold`} from the manifest's train_by_kind lists."""
    if not isinstance(manifest.raw.get("files", {}).get("train_by_kind"), dict):
        raise ShardsError(f"{fs.join(shards_dir, MANIFEST)} has no files.train_by_kind; re-run `make shards`")
    return {kind: absolute(shards_dir, [p for k in sorted(manifest.train_by_kind) if k != fold
                                        for p in manifest.kind_files(k, kind)])
            for kind in schema.SLICE_KINDS}


def _first_record_fields(record: tf.Tensor) -> tuple[int, int]:
    """schema_version and sample_rate of a serialized example, of any schema version."""
    spec = {"schema_version": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    parsed = tf.io.parse_single_example(record, spec)
    return int(parsed["schema_version"]), int(parsed["sample_rate"])


def first_record(path: str) -> ShardInfo:
    """Reads only the first record of `path` (its framing and CRCs are checked): schema version, sample rate.

    Raises ShardsError naming the file when that record is corrupt or the file holds none.
    """
    with naming_corrupt_shard(path):
        first = next(iter(records.file_records(path).take(1)), None)
        if first is None:
            raise ShardsError(f"shard {path} holds no records; re-run `make shards`")
        return ShardInfo(path, *_first_record_fields(first))


def first_records(paths: Sequence[str]) -> list[ShardInfo]:
    """first_record of many files, a few at a time (reads are I/O bound, gs:// especially)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(first_record, paths))


def count_records(path: str) -> int:
    """Reads `path` through (every record's length and CRC checked); ShardsError naming it when corrupt."""
    with naming_corrupt_shard(path):
        dataset = records.file_records(path)
        return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


def find_corrupt_shard(paths: Sequence[str]) -> str | None:
    """Re-reads every file in full and returns the ShardsError message of the first bad one (None if all read)."""
    for path in paths:
        try:
            if count_records(path) == 0:
                return f"shard {path} holds no records; re-run `make shards`"
        except ShardsError as e:
            return str(e)
    return None


@contextlib.contextmanager
def naming_a_corrupt_shard_of(paths: Sequence[str]) -> Iterator[None]:
    """Inside the block, a DataLossError while reading any of `paths` is a ShardsError naming the bad file.

    The up-front check reads only each file's first record, so damage further in shows up when the
    data is read; only then are the files re-read in full to find which one it is.
    """
    try:
        yield
    except tf.errors.DataLossError as e:
        bad = find_corrupt_shard(paths)
        raise ShardsError(bad or f"a shard became unreadable while reading it ({tf_error_reason(e)})") from e
    except tf.errors.OpError as e:
        if "expected to contain" not in e.message:  # tf.data's assert_cardinality against the manifest's counts
            raise
        raise ShardsError(f"the shards do not hold the records manifest.json counts ({tf_error_reason(e)}); "
                          f"a file was replaced or cut after `make shards`: re-run it") from e


def check_compatible(manifest: Manifest, infos: Sequence[ShardInfo], cfg: TrainConfig, shards_dir: str) -> None:
    """The shards must be of this schema version, sample rate and class count, with slices >= window."""
    for info in infos:
        schema.check_version(info.schema_version, f"shard {info.path}")
        if info.sample_rate != cfg.mel.sample_rate:
            raise ShardsError(f"shard {info.path} holds {info.sample_rate} Hz audio but the config reads "
                              f"{cfg.mel.sample_rate} Hz (--mel.sample_rate); use matching shards or config")
    if manifest.num_classes != cfg.num_classes:
        raise ShardsError(f"{shards_dir} has {manifest.num_classes} classes but the config has "
                          f"num_classes={cfg.num_classes}; pass --num_classes {manifest.num_classes}")
    if cfg.window_seconds > manifest.slice_seconds:
        raise ShardsError(f"window_seconds={cfg.window_seconds} is longer than the {manifest.slice_seconds} s "
                          f"slices of {shards_dir}; pass --window_seconds {manifest.slice_seconds:g} or less, or "
                          f"re-shard with --slice_seconds {cfg.window_seconds:g}")


def prepare_fold(shards_dir: str, fold: int, cfg: TrainConfig) -> FoldInputs:
    """Finds and checks the shards of one split; every user mistake is a ShardsError/SchemaError."""
    shards_dir = str(shards_dir)
    manifest = read_manifest(shards_dir)
    train, val = fold_files(manifest, shards_dir, fold)
    by_kind = train_files_by_kind(manifest, shards_dir, fold)
    check_compatible(manifest, first_records(train + val), cfg, shards_dir)
    others = [k for k in sorted(manifest.train) if k != fold]
    n_by_kind = {kind: sum(_fold_count(manifest, k, kind) for k in others) for kind in schema.SLICE_KINDS}
    if not by_kind[schema.KIND_TP]:
        raise ShardsError(f"{shards_dir} has no tp slices outside fold {fold}, so there is nothing to learn from")
    if cfg.class_balance > 0 and manifest.species_examples() is None:
        raise ShardsError(f"--class_balance needs the tp slices per species, which {shards_dir}'s manifest lacks "
                          f"(counts.train_examples_per_species); re-run `make shards`, or use --class_balance 0")
    return FoldInputs(shards_dir, fold, tuple(train), tuple(val), sum(_fold_count(manifest, k) for k in others),
                      _fold_count(manifest, fold), manifest, {k: tuple(v) for k, v in by_kind.items()}, n_by_kind)
