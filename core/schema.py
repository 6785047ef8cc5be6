"""The TFRecord schema shared by the Beam writer (pipeline/) and the tf.data reader (trainer/).

Every shard holds serialized `tf.train.Example`s of one of two kinds:

* **train**: a slice of a training recording, of one of three slice kinds (`kind`):
  `tp` (one per valid row of train_tp.csv, centred on its box), `fp` (one per valid row of
  train_fp.csv, centred on its box) and `background` (windows that overlap no tp box, drawn
  deterministically per recording). Each carries what is known about every species in the slice:
  `labels` (1 = a tp box of the species overlaps the slice) and `label_known` (1 = a tp or fp box of
  the species overlaps the slice, so its label is known; 0 = nothing is known, RFCX labels being
  partial). A species with both a tp and an fp box in the slice is positive.
* **test** (one per test recording): the whole recording, for sliding-window inference.

Audio is stored as raw little-endian int16 PCM bytes (`audio`), lossless for the 16-bit RFCX
sources; `pcm16_to_float_numpy` (and the trainer's TF twin) turns it into float32 in [-1, 1). Times in `event/*` and `boxes/*` are
seconds relative to the slice start (they may fall outside [0, slice length) for boxes that only
partly overlap the slice); frequencies are Hz as in the CSVs.

Usage:

    from core import schema
    record = schema.serialize_example(schema.TRAIN_FIELDS, values)  # writer side: bytes, no TF import
    parsed = tf.io.parse_single_example(record, records.train_parse_spec(num_classes))  # reader side:
    # trainer.data.records holds the tf.io specs and the TF decode, so that this module needs no TensorFlow

Bump SCHEMA_VERSION whenever a field is added, removed or changes meaning; readers refuse shards
of another version (the version is in every example and in manifest.json).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import numpy as np

SCHEMA_VERSION = 2

# Slice kinds of train examples (`kind`); the shards job writes each kind to its own files.
KIND_TP = "tp"
KIND_FP = "fp"
KIND_BACKGROUND = "background"
SLICE_KINDS = (KIND_TP, KIND_FP, KIND_BACKGROUND)
NO_ROW = -1  # row_index of background slices

INT = "int64"
FLOAT = "float"
BYTES = "bytes"


@dataclasses.dataclass(frozen=True)
class Field:
    """One feature: its name, proto type, and whether it holds a variable-length list."""

    name: str
    dtype: str  # INT | FLOAT | BYTES
    is_list: bool = False
    doc: str = ""


# Fields common to both kinds.
_COMMON = (
    Field("schema_version", INT, doc="SCHEMA_VERSION of the writer"),
    Field("recording_id", BYTES, doc="RFCX recording id (file stem)"),
    Field("audio", BYTES, doc="little-endian int16 PCM, mono"),
    Field("sample_rate", INT, doc="sample rate of `audio` (the job's target rate)"),
    Field("num_samples", INT, doc="samples in `audio`"),
    Field("source/sample_rate", INT, doc="sample rate of the FLAC as decoded"),
    Field("source/channels", INT, doc="channels of the FLAC (downmixed to mono by averaging)"),
    Field("source/resampled", INT, doc="1 if resampled to `sample_rate`"),
    Field("source/clipped_samples", INT, doc="samples clipped to int16 after resample/downmix"),
    Field("source/nonfinite_samples", INT, doc="NaN/inf samples of a float source (all channels), stored as 0"),
)

TRAIN_FIELDS: tuple[Field, ...] = _COMMON + (
    Field("kind", BYTES, doc="slice kind: tp | fp | background (SLICE_KINDS)"),
    Field("row_index", INT, doc="0-based data row of the event in train_tp.csv (tp) or train_fp.csv (fp); "
                               "-1 for background"),
    Field("recording_num_samples", INT, doc="length of the whole recording at `sample_rate`"),
    Field("slice_start", INT, doc="first sample of the slice within the recording"),
    Field("fold", INT, doc="cross-validation fold of the recording, 0..num_folds-1"),
    # The row's box (tp, fp). Background slices: species and songtype -1, times the whole slice
    # [0, slice seconds], frequencies 0.
    Field("event/species_id", INT),
    Field("event/songtype_id", INT),
    Field("event/t_min", FLOAT, doc="seconds from slice start"),
    Field("event/t_max", FLOAT, doc="seconds from slice start"),
    Field("event/f_min", FLOAT, doc="Hz"),
    Field("event/f_max", FLOAT, doc="Hz"),
    # Every tp and fp box of the recording overlapping the slice (the event itself included).
    Field("boxes/species_id", INT, True),
    Field("boxes/songtype_id", INT, True),
    Field("boxes/t_min", FLOAT, True, "seconds from slice start"),
    Field("boxes/t_max", FLOAT, True, "seconds from slice start"),
    Field("boxes/f_min", FLOAT, True, "Hz"),
    Field("boxes/f_max", FLOAT, True, "Hz"),
    Field("boxes/is_tp", INT, True, "1 for a train_tp box, 0 for a train_fp box"),
    Field("labels", FLOAT, True, "multi-hot [num_classes]: species with a tp box in the slice"),
    Field("label_known", FLOAT, True, "[num_classes]: 1 for species with a tp or fp box in the slice, else 0"),
)

TEST_FIELDS: tuple[Field, ...] = _COMMON



class SchemaError(ValueError):
    """A value does not fit the schema (writer side) or a record is of another version."""


# TensorFlow's tensorflow/core/example/{feature,example}.proto, rebuilt from the same package, message
# names, field numbers and types with the protobuf runtime alone (installed with Beam). A message's
# wire format depends only on those, so `make_example` yields bytes identical to tf.train.Example's
# (tests/pipeline/test_units.py checks it against TF) without importing TensorFlow, which a Beam
# worker does not install. TF stays the reader (trainer.data.records).
_EXAMPLE_PROTO = {
    "BytesList": [("value", 1, "LABEL_REPEATED", "TYPE_BYTES", None, None)],
    "FloatList": [("value", 1, "LABEL_REPEATED", "TYPE_FLOAT", None, None)],  # proto3: packed
    "Int64List": [("value", 1, "LABEL_REPEATED", "TYPE_INT64", None, None)],  # proto3: packed
    "Feature": [("bytes_list", 1, "LABEL_OPTIONAL", "TYPE_MESSAGE", ".tensorflow.BytesList", 0),
                ("float_list", 2, "LABEL_OPTIONAL", "TYPE_MESSAGE", ".tensorflow.FloatList", 0),
                ("int64_list", 3, "LABEL_OPTIONAL", "TYPE_MESSAGE", ".tensorflow.Int64List", 0)],
    "Features": [("feature", 1, "LABEL_REPEATED", "TYPE_MESSAGE", ".tensorflow.Features.FeatureEntry", None)],
    "Example": [("features", 1, "LABEL_OPTIONAL", "TYPE_MESSAGE", ".tensorflow.Features", None)],
}


@functools.cache
def example_message_class() -> type:
    """The `tensorflow.Example` message class, built without TensorFlow (see _EXAMPLE_PROTO)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="rfcx_tf_example.proto", package="tensorflow",
                                               syntax="proto3")
    for name, fields in _EXAMPLE_PROTO.items():
        msg = proto.message_type.add(name=name)
        for fname, number, label, ftype, type_name, oneof in fields:
            f = msg.field.add(name=fname, number=number, label=getattr(descriptor_pb2.FieldDescriptorProto, label),
                              type=getattr(descriptor_pb2.FieldDescriptorProto, ftype))
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        if name == "Feature":
            msg.oneof_decl.add(name="kind")
        if name == "Features":  # map<string, Feature> feature = 1;
            entry = msg.nested_type.add(name="FeatureEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
            entry.field.add(name="value", number=2, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                            type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    # A private pool: TF registers its own tensorflow.Example in the default pool when it is imported
    # in the same process (tests, the trainer), and a second definition there would clash.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def make_example(fields: tuple[Field, ...], values: Mapping[str, Any]):
    """Builds a `tensorflow.Example` message from `values`, which must name exactly the schema's fields."""
    names = {f.name for f in fields}
    missing, extra = names - set(values), set(values) - names
    if missing or extra:
        raise SchemaError(f"example fields differ from schema: missing={sorted(missing)} extra={sorted(extra)}")
    example = example_message_class()()
    feature = example.features.feature
    for f in fields:
        v = values[f.name]
        items = list(np.asarray(v).reshape(-1)) if f.is_list else [v]
        if f.dtype == INT:
            feature[f.name].int64_list.value.extend(int(x) for x in items)
        elif f.dtype == FLOAT:
            feature[f.name].float_list.value.extend(float(x) for x in items)
        else:
            feature[f.name].bytes_list.value.extend(x.encode() if isinstance(x, str) else bytes(x) for x in items)
    return example


def serialize_example(fields: tuple[Field, ...], values: Mapping[str, Any]) -> bytes:
    """`make_example` serialized with map keys sorted, so equal values always give equal bytes."""
    return make_example(fields, values).SerializeToString(deterministic=True)


PCM16_SCALE = 32768.0  # int16 full scale: stored sample / PCM16_SCALE is the waveform in [-1, 1)


def pcm16_to_numpy(audio_bytes: bytes) -> np.ndarray:
    """Numpy twin of trainer.data.records.pcm16_to_float's decode: bytes -> int16 [num_samples]."""
    return np.frombuffer(audio_bytes, dtype="<i2")


def pcm16_to_float_numpy(audio_bytes: bytes) -> np.ndarray:
    """Numpy twin of trainer.data.records.pcm16_to_float: bytes -> float32 [num_samples] in [-1, 1)."""
    return pcm16_to_numpy(audio_bytes).astype(np.float32) / np.float32(PCM16_SCALE)


def pcm16_to_bytes(samples_int16: np.ndarray) -> bytes:
    """int16 array -> little-endian bytes as stored in `audio` (floats are refused, not truncated)."""
    samples = np.asarray(samples_int16)
    if samples.dtype != np.int16:
        raise SchemaError(f"audio must be int16 samples, got {samples.dtype}")
    return samples.astype("<i2", copy=False).tobytes()


def check_version(version: int, where: str) -> None:
    """Raises SchemaError naming `where` when a shard was written by another schema version."""
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"{where} was written with schema version {int(version)}, this code reads version "
            f"{SCHEMA_VERSION}; re-run `make shards` with this version of the code"
        )
