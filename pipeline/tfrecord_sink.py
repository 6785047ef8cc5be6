"""TFRecord shard files of bounded size, written by the worker that builds the records.

    keyed | "Write" >> WriteShards({(0, "tp"): Destination("OUT/train/fold-0/tp", 200 << 20), ...}, temp_root="OUT")
    # -> OUT/train/fold-0/tp-SSSSS-of-NNNNN.tfrecord, each closed once it holds max_bytes
    pcoll_of_bytes | "Write" >> write_tfrecords("OUT/train/fold-0/tp", max_shard_bytes=200 << 20)  # one destination
    frame_record(b"...")  # one record in TFRecord framing, as tf.io.TFRecordWriter writes it

Why not Beam's sinks: WriteToTFRecord takes no size cap, and a FileBasedSink under beam.io.Write is
one destination: the job needs 16 (5 folds x 3 slice kinds + test), i.e. a Partition and 16 sinks,
each with its own initialise / write / group / finalise steps: ~600 transforms and ~70 bundles the
runner translates and schedules for every run (docs/results.md: that fixed cost is what made the job
lose to a plain loop). Here one DoFn, fused after the one that builds the records, keeps a file per
destination open for the bundle (`ShardFiles`, plain Python), rolls to a new one at max_bytes, and
emits only the closed files' names; one small step renames them to their final names and removes the
temp dir. Records never leave the worker that made them (no shuffle of ~1 MB examples), a
destination without records gets no file, and a failed or retried bundle leaves only temp files,
which the final step (or disk_space.remove_temp_files) deletes.
"""
from __future__ import annotations

import collections
import dataclasses
import struct
import uuid
from typing import IO, Any, Callable, Hashable, Iterable, Mapping

import apache_beam as beam
import google_crc32c
from apache_beam.transforms.window import GlobalWindows

from core import fs
from core.manifest import TFRECORD_SUFFIX, shard_name

# TFRecord's checksum mask (tensorflow/core/lib/hash/crc32c.h: kMaskDelta).
_MASK_DELTA = 0xA282EAD8
# Temp dirs start with this, like Beam's sinks' (pipeline.disk_space removes both after a full disk).
TEMP_DIR_PREFIX = "beam-temp-shards-"


def masked_crc32c(data: bytes) -> int:
    """CRC32C of `data`, rotated right by 15 bits plus a constant, as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _frame_parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(length + its masked crc, data, masked crc of the data): a record without copying `data`."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))


def frame_record(data: bytes) -> bytes:
    """One TFRecord: uint64 LE length, masked crc of the length, the data, masked crc of the data."""
    return b"".join(_frame_parts(data))


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where one kind of record goes: `<prefix>-SSSSS-of-NNNNN.tfrecord` files closed at max_bytes (> 0)."""

    prefix: str
    max_bytes: int


class ShardFiles:
    """Framed records into files `<temp_stem>-<n>`, a new file once one holds max_bytes (checked after
    each record, so a file can exceed it by one record). Plain Python; `opener(path)` gives a binary
    file to write (core.fs.open_file by default).

        files = ShardFiles("OUT/beam-temp-x/ab12", max_bytes=200 << 20)
        files.write(b"..."); files.write(b"...")
        files.close()   # -> ["OUT/beam-temp-x/ab12-00000", ...], the files written, in order
    """

    def __init__(self, temp_stem: str, max_bytes: int,
                 opener: Callable[[str], IO[bytes]] = lambda p: fs.open_file(p, "wb")):
        self._stem, self._max, self._open = temp_stem, max_bytes, opener
        self._handle: IO[bytes] | None = None
        self._bytes = 0
        self.paths: list[str] = []

    def write(self, record: bytes) -> None:
        if self._handle is None:
            path = f"{self._stem}-{len(self.paths):05d}"
            self._handle, self._bytes = self._open(path), 0
            self.paths.append(path)
        for part in _frame_parts(record):
            self._handle.write(part)
        self._bytes += len(record) + 16  # 8 length + 4 + 4 crc bytes
        if self._bytes >= self._max:
            self._close_current()

    def _close_current(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()

    def close(self) -> list[str]:
        self._close_current()
        return list(self.paths)


class _WriteShardFiles(beam.DoFn):
    """(key, record bytes) -> nothing per element; at the end of a bundle (prefix, temp path) per file."""

    def __init__(self, destinations: Mapping[Hashable, Destination], temp_dir: str):
        self._destinations, self._temp_dir = dict(destinations), temp_dir
        self._files: dict[Hashable, ShardFiles] = {}

    def start_bundle(self):
        self._files = {}

    def process(self, element: tuple[Hashable, bytes]):
        key, record = element
        files = self._files.get(key)
        if files is None:  # a new stem per bundle: a retried bundle never reuses a file name
            files = self._files[key] = ShardFiles(fs.join(self._temp_dir, uuid.uuid4().hex),
                                                  self._destinations[key].max_bytes)
        files.write(record)

    def finish_bundle(self):
        files, self._files = self._files, {}
        for key, written in files.items():
            for path in written.close():
                yield GlobalWindows.windowed_value((self._destinations[key].prefix, path))


def finalize_shards(written: Iterable[tuple[str, str]], temp_dir: str) -> list[str]:
    """Renames every (prefix, temp path) to `<prefix>-SSSSS-of-NNNNN.tfrecord`, numbered per prefix in
    the order of the temp paths; removes temp_dir; returns the final paths."""
    by_prefix: dict[str, list[str]] = collections.defaultdict(list)
    for prefix, path in written:
        by_prefix[prefix].append(path)
    final = []
    for prefix, paths in sorted(by_prefix.items()):
        paths.sort()
        for i, path in enumerate(paths):
            target = shard_name(prefix, i, len(paths), TFRECORD_SUFFIX)
            if i == 0:
                fs.makedirs(fs.dirname(target))
            fs.rename(path, target)
            final.append(target)
    fs.remove(temp_dir)
    return final


class WriteShards(beam.PTransform):
    """(key, serialized record) pairs -> TFRecord files per key's Destination; outputs the final paths.

    temp_root: where the temp dir `beam-temp-shards-<uuid>` goes (on the file system of the
    destinations, so that the final renames are moves within it). Every key of the input must be
    in `destinations`.
    """

    def __init__(self, destinations: Mapping[Hashable, Destination], temp_root: str):
        super().__init__()
        self._destinations = dict(destinations)
        self._temp_dir = fs.join(temp_root, TEMP_DIR_PREFIX + uuid.uuid4().hex)

    def expand(self, pcoll: Any) -> Any:
        return (pcoll
                | "WriteShardFiles" >> beam.ParDo(_WriteShardFiles(self._destinations, self._temp_dir))
                | "ListShardFiles" >> beam.combiners.ToList()
                | "NameShardFiles" >> beam.FlatMap(finalize_shards, self._temp_dir))


def write_tfrecords(prefix: str, max_shard_bytes: int) -> beam.PTransform:
    """Writes a PCollection of bytes as TFRecord files `<prefix>-SSSSS-of-NNNNN.tfrecord` of about
    max_shard_bytes (> 0) each (no file for no records)."""
    return _OneDestination(prefix, max_shard_bytes)


class _OneDestination(beam.PTransform):
    def __init__(self, prefix: str, max_shard_bytes: int):
        super().__init__()
        self._prefix, self._max = prefix, max_shard_bytes

    def expand(self, pcoll: Any) -> Any:
        return (pcoll
                | "Key" >> beam.Map(lambda record: (None, record))
                | "Write" >> WriteShards({None: Destination(self._prefix, self._max)}, fs.dirname(self._prefix)))
