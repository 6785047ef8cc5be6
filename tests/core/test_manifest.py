"""core.manifest: the manifest a real job writes and the one tests.helpers.shard_factory writes read back through the one layout module."""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import tensorflow as tf

from core import manifest as layout
from core import schema
from tests.conftest import (
    TINY_NUM_FOLDS,
    TINY_NUM_TEST,
    TINY_SLICE_SECONDS,
)


def test_manifest_layout_agrees_with_shard_factory(tiny_shards, tmp_path):
    """Trainer tests use tests/helpers/shard_factory.py in place of the job: both must write the same layout."""
    from tests.helpers import shard_factory

    job = json.load(open(os.path.join(tiny_shards, "manifest.json")))
    audio = np.zeros(32000, np.int16)
    by_fold = {k: [shard_factory.train_example(f"r{k}", k, 1, 0.1, 0.2, audio, kind=kind)
                   for kind in schema.SLICE_KINDS] for k in range(2)}
    fake = json.load(open(os.path.join(shard_factory.write_shards(str(tmp_path), by_fold), "manifest.json")))
    pattern = r"train/fold-(\d+)/(tp|fp|background)-\d{5}-of-\d{5}\.tfrecord"
    for m in (job, fake):
        assert m["schema_version"] == schema.SCHEMA_VERSION
        for fold, kinds in m["files"]["train_by_kind"].items():
            assert set(kinds) == set(schema.SLICE_KINDS)
            assert set(m["files"]["train"][fold]) == {p for paths in kinds.values() for p in paths}
            for kind, paths in kinds.items():
                assert all(re.fullmatch(pattern, p).groups() == (fold, kind) for p in paths)
        assert set(m["counts"]["train_examples_per_fold_kind"]) == set(m["files"]["train"])
        for fold, per_kind in m["counts"]["train_examples_per_fold_kind"].items():
            assert set(per_kind) == set(schema.SLICE_KINDS)
            assert sum(per_kind.values()) == m["counts"]["train_examples_per_fold"][fold]
    assert job["files"]["train"]["0"] == sorted(job["files"]["train"]["0"])
    assert set(fake) <= set(job) and set(fake["files"]) <= set(job["files"])
    assert set(fake["counts"]) <= set(job["counts"])


def test_job_manifest_reads_back_through_the_layout_module(tiny_shards):
    """The typed reader the trainer uses accepts what the job wrote, and names exactly the files on disk."""
    m = layout.Manifest.from_dict(json.load(open(os.path.join(tiny_shards, layout.MANIFEST_FILE))))
    assert (m.num_folds, m.slice_seconds, m.schema_version) == (TINY_NUM_FOLDS, TINY_SLICE_SECONDS,
                                                                 schema.SCHEMA_VERSION)
    assert m.folds_with_shards() == list(range(TINY_NUM_FOLDS))
    for k in range(TINY_NUM_FOLDS):
        listed = set()
        for kind in schema.SLICE_KINDS:
            on_disk = glob.glob(os.path.join(tiny_shards, layout.shard_glob(layout.train_prefix(k, kind))))
            assert set(m.kind_files(k, kind)) == {os.path.relpath(p, tiny_shards) for p in on_disk}
            n = sum(1 for p in on_disk for _ in tf.data.TFRecordDataset(p))
            assert m.examples(k, kind) == n
            listed |= set(m.kind_files(k, kind))
        assert set(m.train_files(k)) == listed
    test_files = glob.glob(os.path.join(tiny_shards, layout.shard_glob(layout.TEST_PREFIX)))
    assert set(m.test) == {os.path.relpath(p, tiny_shards) for p in test_files}
    assert m.test_examples == TINY_NUM_TEST and m.test_rejected == 0
    for name in (layout.CONFIG_FILE, layout.FOLDS_CSV, layout.SAMPLE_SUBMISSION, layout.TEST_TRUTH):
        assert os.path.exists(os.path.join(tiny_shards, name)), name


def test_shard_factory_manifest_reads_back_through_the_layout_module(tmp_path):
    from tests.helpers import shard_factory

    by_fold = shard_factory.three_kind_folds(num_folds=2)
    out = shard_factory.write_shards(str(tmp_path), by_fold, files_per_fold=2)
    m = layout.Manifest.from_dict(json.load(open(os.path.join(out, layout.MANIFEST_FILE))))
    for k, exs in by_fold.items():
        assert m.examples(k) == len(exs)
        for kind in schema.SLICE_KINDS:
            files = m.kind_files(k, kind)
            assert all(os.path.exists(os.path.join(out, f)) for f in files)
            assert sum(1 for f in files for _ in tf.data.TFRecordDataset(os.path.join(out, f))) == \
                sum(1 for e in exs if e["kind"] == kind) == m.examples(k, kind)
