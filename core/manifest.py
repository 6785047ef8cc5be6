"""The shards dir's layout and its manifest.json: the one place both the writer and the readers name them.

Written by pipeline.shards (and tests/helpers/shard_factory.py, which fakes the job's output); read by
trainer.data.discovery, trainer.data.recordings, trainer.inference.predict and trainer.baseline.run. No I/O here: callers read and
write the JSON through core.fs, the one filesystem layer of both sides.

    OUT/
      config.json, folds.csv, sample_submission.csv [, test_truth.csv]
      train/fold-K/{tp,fp,background}-SSSSS-of-NNNNN.tfrecord     train_prefix(K, kind)
      test/test-SSSSS-of-NNNNN.tfrecord                             TEST_PREFIX
      rejected/rejected-SSSSS-of-NNNNN.jsonl                        REJECTED_PREFIX, REJECTED_SUFFIX
      manifest.json                                                 written last: the job finished

manifest.json keys (all written by the job; REQUIRED_KEYS are what readers rely on):
    schema_version, num_classes, sample_rate, slice_seconds, num_folds, fold_seed
    files.train[K]            every train file of fold K (relative to OUT), all kinds
    files.train_by_kind[K][kind]   the same, per slice kind
    files.test, files.rejected     test shards, dead-letter files
    counts.*                  input rows, examples per fold / kind / species, rejections by reason
    test_set, config, inputs  provenance (the resolved ShardsConfig, CSV digests)

    from core import manifest
    m = layout.Manifest.from_dict(json.loads(text), where="OUT/manifest.json")
    m.train_files(fold=0)                   # relative paths of fold 0
    m.examples(fold=0, kind="tp")           # from counts, without reading a shard
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from core import schema
from core.errors import UserError

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
FOLDS_CSV = "folds.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TEST_TRUTH = "test_truth.csv"
TRAIN_DIR, TEST_DIR, REJECTED_DIR = "train", "test", "rejected"
TEST_PREFIX = f"{TEST_DIR}/test"
REJECTED_PREFIX = f"{REJECTED_DIR}/rejected"
TFRECORD_SUFFIX = ".tfrecord"
REJECTED_SUFFIX = ".jsonl"
REQUIRED_KEYS = ("schema_version", "num_classes", "sample_rate", "slice_seconds", "num_folds", "files", "counts")


def train_prefix(fold: int | str, kind: str) -> str:
    """Relative shard-name prefix of one (fold, kind) file set: train/fold-K/<kind> ("*" for either globs)."""
    return f"{TRAIN_DIR}/fold-{fold}/{kind}"


def shard_name(prefix: str, index: int, count: int, suffix: str = TFRECORD_SUFFIX) -> str:
    """File `index` of `count` of a file set: <prefix>-SSSSS-of-NNNNN<suffix> (Beam's shard name template)."""
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def shard_glob(prefix: str, suffix: str = TFRECORD_SUFFIX) -> str:
    """Glob of every file of a file set, whatever its count."""
    return f"{prefix}-*{suffix}"


class ManifestError(UserError):
    """manifest.json is missing keys or holds the wrong types: the dir was not written by a finished job."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Typed view of manifest.json; `raw` keeps the whole document (provenance, per-species counts)."""

    schema_version: int
    num_classes: int
    sample_rate: int
    slice_seconds: float
    num_folds: int
    train: Mapping[int, tuple[str, ...]]                       # fold -> relative train files, all kinds
    train_by_kind: Mapping[int, Mapping[str, tuple[str, ...]]]  # fold -> kind -> relative files
    test: tuple[str, ...]
    counts: Mapping[str, Any]
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST_FILE) -> "Manifest":
        """Checks the schema version and the keys readers need; ManifestError/SchemaError saying what is wrong."""
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must hold a JSON object, got {type(data).__name__}; re-run `make shards`")
        schema.check_version(data.get("schema_version", -1), where)
        missing = sorted(k for k in REQUIRED_KEYS if k not in data)
        if missing:
            raise ManifestError(f"{where} lacks {', '.join(missing)}; it was not written by a finished "
                                f"`make shards`")
        try:
            files = data["files"]
            train = {int(k): tuple(v) for k, v in files.get("train", {}).items()}
            by_kind = {int(k): {kind: tuple(v.get(kind, ())) for kind in schema.SLICE_KINDS}
                       for k, v in files.get("train_by_kind", {}).items()}
            return cls(int(data["schema_version"]), int(data["num_classes"]), int(data["sample_rate"]),
                       float(data["slice_seconds"]), int(data["num_folds"]), train, by_kind,
                       tuple(files.get("test", ())), dict(data["counts"]), data)
        except (AttributeError, TypeError, ValueError) as e:
            raise ManifestError(f"{where} is malformed ({e}); re-run `make shards`") from e

    def folds_with_shards(self) -> list[int]:
        return sorted(k for k, v in self.train.items() if v)

    def train_files(self, fold: int) -> tuple[str, ...]:
        return self.train.get(fold, ())

    def kind_files(self, fold: int, kind: str) -> tuple[str, ...]:
        return self.train_by_kind.get(fold, {}).get(kind, ())

    def examples(self, fold: int, kind: str | None = None) -> int | None:
        """Examples of fold `fold` (of one kind), from the job's counters; None if the manifest lacks them."""
        if kind is None:
            value = self.counts.get("train_examples_per_fold", {}).get(str(fold))
        else:
            value = self.counts.get("train_examples_per_fold_kind", {}).get(str(fold), {}).get(kind)
        return None if value is None else int(value)

    def species_examples(self) -> list[int] | None:
        """tp slices per species over every fold ([num_classes]); None if the manifest lacks them."""
        per = self.counts.get("train_examples_per_species")
        if not isinstance(per, dict):
            return None
        return [int(per.get(str(s), 0)) for s in range(self.num_classes)]

    @property
    def test_examples(self) -> int | None:
        value = self.counts.get("test_examples")
        return None if value is None else int(value)

    @property
    def test_rejected(self) -> int:
        return int(self.counts.get("test_rejected", 0))
