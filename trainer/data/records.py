"""The one reader of shard files: TFRecord framing, the schema's parse specs, PCM decoding, and the
errors a damaged file turns into (ShardsError naming it). Every other module reads shards through here.

    ds = records.file_records(path)                       # tf.data.Dataset of serialized examples
    for r in records.parsed_records(paths, records.test_parse_spec()):   # numpy dicts, in file order
        audio = records.pcm16_to_float_numpy(r["audio"])
    with records.naming_corrupt_shard(path):              # DataLossError -> ShardsError naming `path`
        ...
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Mapping, Sequence

import tensorflow as tf

from core import schema
from core.errors import UserError
from core.schema import pcm16_to_float_numpy  # noqa: F401  (the numpy twin of pcm16_to_float, re-exported)

READ_BUFFER = 8 << 20  # bytes read ahead per file: shards are read sequentially, in large pieces


class ShardsError(UserError):
    """The shards dir, its manifest or a shard file cannot be used for training."""


def parse_spec(fields: tuple[schema.Field, ...], num_classes: int | None) -> dict[str, Any]:
    """tf.io feature spec of `fields` (schema.TRAIN_FIELDS / TEST_FIELDS); `labels`/`label_known` are [C]."""
    tf_types = {schema.INT: tf.int64, schema.FLOAT: tf.float32, schema.BYTES: tf.string}
    spec = {}
    for f in fields:
        if f.name in ("labels", "label_known"):
            spec[f.name] = tf.io.FixedLenFeature([num_classes], tf.float32)
        elif f.is_list:
            spec[f.name] = tf.io.VarLenFeature(tf_types[f.dtype])
        else:
            spec[f.name] = tf.io.FixedLenFeature([], tf_types[f.dtype])
    return spec


def train_parse_spec(num_classes: int) -> dict[str, Any]:
    """Feature spec for tf.io.parse_example of train records (`labels`, `label_known`: [num_classes])."""
    return parse_spec(schema.TRAIN_FIELDS, num_classes)


def test_parse_spec() -> dict[str, Any]:
    """Feature spec for tf.io.parse_example of test records."""
    return parse_spec(schema.TEST_FIELDS, None)


def pcm16_to_float(audio_bytes: tf.Tensor) -> tf.Tensor:
    """int16 PCM bytes (scalar string tensor) -> float32 [num_samples] in [-1, 1) (schema.PCM16_SCALE)."""
    return tf.cast(tf.io.decode_raw(audio_bytes, tf.int16, little_endian=True), tf.float32) / schema.PCM16_SCALE


def file_records(path: tf.Tensor | str) -> tf.data.Dataset:
    """Serialized examples of one shard file, in order (framing and CRCs checked as they are read)."""
    return tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER)


# ---- corrupt TFRecords: the one place their errors become messages ----

def tf_error_reason(error: tf.errors.OpError) -> str:
    """The gist of a TF error: "corrupted record at 12" without the op and function names around it."""
    text = re.sub(r"\{\{[^}]*\}\}", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", text).strip(" '") or type(error).__name__


def corrupt_shard_error(path: str, error: tf.errors.OpError) -> ShardsError:
    return ShardsError(f"shard {path} is corrupt ({tf_error_reason(error)}); re-run `make shards` or restore "
                       f"the file")


@contextlib.contextmanager
def naming_corrupt_shard(path: str) -> Iterator[None]:
    """Inside the block, a TFRecord framing/CRC or parse error while reading `path` is a ShardsError naming it."""
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise corrupt_shard_error(path, e) from e


def parsed_records(files: Sequence[str], spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Parsed examples (numpy values) of `files` in order, one at a time; a corrupt file is named."""
    spec = dict(spec)
    for path in files:
        dataset = file_records(path).map(lambda r: tf.io.parse_single_example(r, spec))
        with naming_corrupt_shard(path):
            yield from dataset.as_numpy_iterator()
