"""The exported model's computation: one or more runs' serving models -> window and recording functions.

Each run's best.keras becomes a float32 Keras model with two outputs (the head's penultimate
vector is the embedding) behind the run's LogMel front end (trainer.inference.serving):

    waveform float32 [B, window_samples] -> LogMel -> [B, n_mels, frames, 1]
      -> best.keras (float32 copy) -> scores [B, C] (the "scores" layer), embeddings [B, D]
         (the Dense(dense_units) output after its relu; a framewise head's averaged over time:
         trainer.model.heads.embedding_output)

`Ensemble` averages the scores of its models and concatenates their embeddings (core.export_layout's
ExportMetadata), and cuts a whole recording into windows inside the graph with core.windows' rule.
Its two tf.functions are what trainer.inference.export saves as the SavedModel's signatures and
trainer.inference.tflite_export converts.

A mixed-precision run (layers computing in bfloat16/float16) is exported computing in float32: the
weights are float32 either way, TFLite builtins have no bfloat16 kernels, and one precision for
every exported format keeps them comparable; the export's scores then differ from the mixed Keras
model's only by that model's own rounding.

    from trainer.inference import export_model
    models = [export_model.window_model(run, runs.load_model(run)) for run in loaded]
    ensemble = export_model.Ensemble(models, window=96000, stride=48000, batch_size=16)
    out = ensemble.score_windows(tf.zeros([4, 96000]))        # {"scores": [4, C], "embeddings": [4, D]}
    out = ensemble.score_recording(tf.zeros([300000]))        # + "starts": int64 [W]
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from core import export_layout as layout
from core.errors import UserError
from trainer.inference import serving
from trainer.model import heads
from trainer.model import network as _layers  # noqa: F401  registers the custom layers for from_config
from trainer.training.runs import Run

FLOAT32 = "float32"


def _float32_policies(config: Any) -> tuple[Any, int]:
    """A copy of a Keras config with every mixed dtype policy replaced by float32; (copy, how many)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            name = config["config"].get("name", "")
            if isinstance(name, str) and name.startswith("mixed_"):
                return {**config, "config": {**config["config"], "name": FLOAT32}}, 1
        out, count = {}, 0
        for key, value in config.items():
            out[key], n = _float32_policies(value)
            count += n
        return out, count
    if isinstance(config, list):
        pairs = [_float32_policies(v) for v in config]
        return [p[0] for p in pairs], sum(p[1] for p in pairs)
    return config, 0


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` itself when every layer computes in float32, else a float32 copy with the same weights.

    Mixed-precision models keep float32 variables, so the copy's weights are exactly the model's.
    """
    config, mixed = _float32_policies(model.get_config())
    if not mixed:
        return model
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def with_embeddings(model: keras.Model) -> keras.Model:
    """[B, n_mels, frames, 1] -> [scores [B, C], embeddings [B, D]]: the trained model's output and its
    head's embedding (trainer.model.heads.embedding_output), sharing `model`'s layers."""
    try:
        embedding = heads.embedding_output(model)
    except ValueError as e:
        raise UserError(str(e)) from e
    return keras.Model(model.inputs, [model.outputs[0], embedding], name=f"{model.name}_embeddings")


def window_model(run: Run, trained: keras.Model) -> keras.Model:
    """float32 [B, window_samples] waveforms -> [scores [B, C], embeddings [B, D]], all in float32."""
    return serving.build_serving_model(run, with_embeddings(float32_copy(trained)))


def window_signature(batch: int | None, window: int) -> tf.TensorSpec:
    return tf.TensorSpec([batch, window], tf.float32, name=layout.INPUT)


def recording_signature() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.float32, name=layout.INPUT)


class Ensemble:
    """Window models of equal window length: scores averaged, embeddings concatenated (model order)."""

    def __init__(self, models: Sequence[keras.Model], window: int, stride: int, batch_size: int) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        if not 0 < stride <= window or batch_size < 1:
            raise ValueError(f"bad window {window} / stride {stride} / batch_size {batch_size}")
        self.models, self.window, self.stride, self.batch_size = list(models), window, stride, batch_size
        self.num_classes = int(self.models[0].outputs[0].shape[-1])
        self.embedding_size = sum(int(model.outputs[1].shape[-1]) for model in self.models)

    def score_windows(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """float32 [B, window] -> {"scores": float32 [B, C], "embeddings": float32 [B, num_models x D]}."""
        outputs = [model(waveform, training=False) for model in self.models]  # each [scores, embeddings]
        scores = outputs[0][0] if len(outputs) == 1 else tf.add_n([o[0] for o in outputs]) / len(outputs)
        embeddings = tf.concat([tf.cast(o[1], tf.float32) for o in outputs], axis=-1)
        return {layout.SCORES: tf.cast(scores, tf.float32), layout.EMBEDDINGS: embeddings}

    def window_starts(self, num_samples: tf.Tensor) -> tf.Tensor:
        """core.windows.window_starts in TensorFlow: int64 scalar -> int64 [W]."""
        last = tf.maximum(num_samples - self.window, 0)
        starts = tf.range(0, last + 1, self.stride, dtype=tf.int64)  # 0, stride, ... <= last
        # The last regular start equals `last` exactly when stride divides it; else one window more ends at the end.
        extra = tf.cast(tf.math.floormod(last, self.stride) != 0, tf.int32)
        return tf.concat([starts, tf.reshape(last, [1])[:extra]], axis=0)

    def score_recording(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """float32 [n] -> scores [W, C], embeddings [W, D], starts int64 [W] (W windows, core.windows' rule).

        Windows are scored batch_size at a time (one batch in memory: a long recording's windows are
        never all materialised at once).
        """
        waveform = tf.reshape(waveform, [-1])
        num_samples = tf.shape(waveform, out_type=tf.int64)[0]
        starts = self.window_starts(num_samples)  # [W]
        padded = tf.pad(waveform, [[0, tf.maximum(self.window - num_samples, 0)]])  # short: zero-padded to one window
        offsets = tf.range(self.window, dtype=tf.int64)[tf.newaxis, :]  # [1, window]
        num_batches = (tf.size(starts) + self.batch_size - 1) // self.batch_size
        size = self.batch_size

        def body(i: tf.Tensor, scores: tf.TensorArray, embeddings: tf.TensorArray):
            batch_starts = starts[i * size:(i + 1) * size]  # [b]
            windows = tf.gather(padded, batch_starts[:, tf.newaxis] + offsets)  # [b, window]
            out = self.score_windows(windows)
            return i + 1, scores.write(i, out[layout.SCORES]), embeddings.write(i, out[layout.EMBEDDINGS])

        arrays = (tf.TensorArray(tf.float32, size=num_batches, infer_shape=False),
                  tf.TensorArray(tf.float32, size=num_batches, infer_shape=False))
        # parallel_iterations=1: one batch of windows in flight, so memory does not grow with the recording.
        _, scores, embeddings = tf.while_loop(lambda i, *_: i < num_batches, body, (tf.constant(0), *arrays),
                                              parallel_iterations=1)
        return {layout.SCORES: tf.ensure_shape(scores.concat(), [None, self.num_classes]),
                layout.EMBEDDINGS: tf.ensure_shape(embeddings.concat(), [None, self.embedding_size]),
                layout.STARTS: starts}
