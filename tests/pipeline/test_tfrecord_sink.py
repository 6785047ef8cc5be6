"""pipeline.tfrecord_sink: its framing read back by TensorFlow, and its size cap in a real DirectRunner run."""
from __future__ import annotations

import glob
import os
import re

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline

from pipeline import tfrecord_sink

# uint64 length + masked crc of it + masked crc of the data, per record.
FRAMING_BYTES = 16


def _records() -> list[bytes]:
    rng = np.random.default_rng(7)
    return [b"", b"x", bytes(range(256)), rng.integers(0, 256, 3 * 2**20 + 5, dtype=np.uint8).tobytes()]


def test_tensorflow_reads_framed_records_byte_identical(tmp_path):
    records = _records()
    path = str(tmp_path / "framed.tfrecord")
    with open(path, "wb") as f:
        for r in records:
            f.write(tfrecord_sink.frame_record(r))
    assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == records
    assert os.path.getsize(path) == sum(len(r) + FRAMING_BYTES for r in records)


def test_framing_equals_tensorflows_writer(tmp_path):
    path = str(tmp_path / "tf.tfrecord")
    records = _records()
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)
    with open(path, "rb") as f:
        assert f.read() == b"".join(tfrecord_sink.frame_record(r) for r in records)


def test_corrupted_frame_is_refused_by_tensorflow(tmp_path):
    framed = bytearray(tfrecord_sink.frame_record(b"payload"))
    framed[14] ^= 0xFF  # a data byte: the data crc no longer matches
    path = str(tmp_path / "bad.tfrecord")
    with open(path, "wb") as f:
        f.write(bytes(framed))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(path))


def test_size_cap_splits_into_several_named_files(tmp_path):
    record_bytes = 10_000
    records = [bytes([i]) * record_bytes for i in range(30)]
    cap = 3 * record_bytes  # 30 framed records of ~10 kB: at least 10 files
    prefix = str(tmp_path / "train" / "fold-0" / "tp")
    with test_pipeline.TestPipeline(runner="DirectRunner") as p:
        _ = p | beam.Create(records) | tfrecord_sink.write_tfrecords(prefix, cap)
    paths = sorted(glob.glob(str(tmp_path / "train" / "fold-0" / "*")))
    names = [os.path.basename(p) for p in paths]
    assert all(re.fullmatch(r"tp-(\d{5})-of-(\d{5})\.tfrecord", n) for n in names), names
    assert len(paths) >= len(records) * (record_bytes + FRAMING_BYTES) // (cap + record_bytes + FRAMING_BYTES)
    assert len(paths) > 1
    # A file is closed after the record that reaches the cap: at most one record beyond it.
    assert all(os.path.getsize(p) < cap + record_bytes + FRAMING_BYTES for p in paths)
    read = sorted(r.numpy() for r in tf.data.TFRecordDataset(paths))
    assert read == sorted(records)


def test_write_shards_routes_by_key_writes_nothing_for_an_empty_destination_and_cleans_up(tmp_path):
    records = {"a": [b"a%d" % i for i in range(5)], "b": [b"b%d" % i * 1000 for i in range(7)]}
    out = str(tmp_path / "out")
    destinations = {key: tfrecord_sink.Destination(os.path.join(out, key, "part"), 2500) for key in ("a", "b", "c")}
    with test_pipeline.TestPipeline(runner="DirectRunner") as p:
        _ = (p | beam.Create([(k, r) for k, rs in records.items() for r in rs])
             | tfrecord_sink.WriteShards(destinations, temp_root=out))
    for key, expected in records.items():
        paths = sorted(glob.glob(os.path.join(out, key, "*")))
        assert paths and all(re.fullmatch(r"part-(\d{5})-of-%05d\.tfrecord" % len(paths), os.path.basename(p))
                             for p in paths), paths
        assert sorted(r.numpy() for r in tf.data.TFRecordDataset(paths)) == sorted(expected)
    assert len(glob.glob(os.path.join(out, "b", "*"))) > 1  # 7 records of ~3 kB over a 2.5 kB cap
    assert not os.path.exists(os.path.join(out, "c"))  # no records, no file
    assert sorted(os.listdir(out)) == ["a", "b"]  # the temp dir is gone


def test_shard_files_roll_at_the_cap_and_frame_like_tensorflow(tmp_path):
    files = tfrecord_sink.ShardFiles(str(tmp_path / "stem"), max_bytes=30)
    for r in (b"x" * 10, b"y" * 10, b"z" * 3):
        files.write(r)
    paths = files.close()
    # 26 bytes framed each: the first file reaches the cap with its second record and is closed.
    assert [os.path.basename(p) for p in paths] == ["stem-00000", "stem-00001"]
    assert [os.path.getsize(p) for p in paths] == [52, 19]
    assert [r.numpy() for r in tf.data.TFRecordDataset(paths)] == [b"x" * 10, b"y" * 10, b"z" * 3]
