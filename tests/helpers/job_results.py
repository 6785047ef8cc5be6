"""Reading a shards job's results in tests: parsed examples of TFRecord files, and counters of a PipelineResult.

    exs = read_examples([path, ...], records.train_parse_spec(24))   # [{feature: numpy value}]
    n = counter(result, "train_examples")                            # committed value, summed over steps
"""
from __future__ import annotations

import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter


def read_examples(paths, spec) -> list[dict]:
    """Every record of `paths` parsed with `spec`; sparse features made dense."""
    out = []
    for rec in tf.data.TFRecordDataset(paths):
        parsed = tf.io.parse_single_example(rec, spec)
        out.append({k: (tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy())
                    for k, v in parsed.items()})
    return out


def counter(result, name: str) -> int:
    """The committed value of counter `name` of a finished job, summed over the steps that report it."""
    return sum(c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"])
