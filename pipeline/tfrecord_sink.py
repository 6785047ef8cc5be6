"""TFRecord files of bounded size, written through Beam's public sink API.

    pcoll_of_bytes | "Write" >> write_tfrecords("OUT/train/fold-0/tp", max_shard_bytes=200 << 20)
    # -> OUT/train/fold-0/tp-SSSSS-of-NNNNN.tfrecord, each closed once it holds max_shard_bytes
    frame_record(b"...")  # one record in TFRecord framing, as tf.io.TFRecordWriter writes it

Beam's WriteToTFRecord does not take a size cap, so the job uses its own FileBasedSink (whose
constructor does) with the TFRecord framing written here, under beam.io.Write.
"""
from __future__ import annotations

import struct

import apache_beam as beam
import google_crc32c
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from core.manifest import TFRECORD_SUFFIX

# TFRecord's checksum mask (tensorflow/core/lib/hash/crc32c.h: kMaskDelta).
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """CRC32C of `data`, rotated right by 15 bits plus a constant, as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: uint64 LE length, masked crc of the length, the data, masked crc of the data."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), data,
                     struct.pack("<I", masked_crc32c(data))))


class TFRecordSink(filebasedsink.FileBasedSink):
    """Uncompressed TFRecord files `<prefix>-SSSSS-of-NNNNN.tfrecord` of serialized records (bytes).

    num_shards=0 makes Beam write one file per bundle inside the fused stage that builds the
    records, instead of grouping every record by a shard key first (a GroupByKey that carries each
    ~1 MB example through the runner and, on the DirectRunner, holds all of them in the runner's
    memory at once). The sink starts a new file once one holds max_bytes_per_shard (checked after
    each record, so a file can exceed it by one record), so the file count follows the bytes written.
    """

    def __init__(self, file_path_prefix: str, max_bytes_per_shard: int):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=TFRECORD_SUFFIX, num_shards=0,
                         compression_type=CompressionTypes.UNCOMPRESSED, max_bytes_per_shard=max_bytes_per_shard)

    def write_encoded_record(self, file_handle, encoded_value: bytes) -> None:
        file_handle.write(frame_record(encoded_value))


def write_tfrecords(prefix: str, max_shard_bytes: int) -> beam.PTransform:
    """Writes a PCollection of bytes as TFRecord files of about max_shard_bytes (> 0) each."""
    return beam.io.Write(TFRecordSink(prefix, max_shard_bytes))
