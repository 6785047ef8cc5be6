"""The classifier heads on the backbone's features (TrainConfig.head), and where each keeps its embedding.

    "gap" (the seed's head, the default):
      [B, F', T', D] --GlobalAveragePooling2D--> [B, D] --BN, Dropout--> --Dense(units, relu)--> [B, units]
        (the embedding) --BN, Dropout--> --Dense(C, sigmoid|softmax, float32, "scores")--> [B, C]
    "attention" / "max_avg" (framewise, SED-style as PANNs' decision-level heads):
      [B, F', T', D] --mean (or, with head_freq_pool "max", max) over frequency--> [B, T', D]
        --max_pool3 + avg_pool3 over time--> [B, T', D]
        --BN, Dropout, Dense(units, relu) per frame ("frame_embedding")--> [B, T', units] --BN, Dropout-->
        --Dense(C, float32) per frame--> logits [B, T', C]
        "attention": --Dense(C, float32) per frame--> attention [B, T', C];
                     scores[b, c] = sum_t softmax_t(attention)[b, t, c] * sigmoid(logits)[b, t, c]
        "max_avg":   scores[b, c] = (max_t + mean_t of sigmoid(logits)[b, t, c]) / 2
        --> "scores" [B, C] float32 in [0, 1]
      embedding: the framewise one averaged over time, [B, units] (`embedding_output`).

F', T', D: the backbone's grid and channels (trainer.model.backbones; ResNet50: ceil(n_mels/32), ceil(frames/32),
2048). A framewise head scores each of the T' time steps of the feature map and pools the clip score from them,
so a short call can count through its own steps rather than through its share of a window-wide average.
Both framewise heads pool probabilities of independent (sigmoid) species; loss "softmax" is refused
for them (TrainConfig). The last layer of every head is named "scores" and computes in float32 under
mixed precision, so losses, LWLRAP, serving and export see the same output whatever the head.

    from trainer.model import heads
    scores = heads.build_head(cfg, backbone_output)            # KerasTensor [B, C]
    embedding = heads.embedding_output(trained_model)           # KerasTensor [B, D] on the model's graph
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
from keras import ops

if TYPE_CHECKING:  # annotations only: the model modules import no TensorFlow (benchmarks/bench_keras_jax.py)
    from trainer.recipe.config import TrainConfig

SCORES = "scores"
FRAME_EMBEDDING = "frame_embedding"  # the framewise heads' Dense(units): [B, T', units]


def attention_pool(frame_logits: Any, frame_attention: Any) -> Any:
    """[B, T, C] logits, [B, T, C] attention logits -> [B, C]: sigmoid scores averaged over time with
    softmax-over-time weights of each species' own attention."""
    weights = ops.softmax(frame_attention, axis=1)  # [B, T, C], sums to 1 over T
    # The weights' sum may round to 1 + 1e-7: clipped, so a score stays a probability for the loss and LWLRAP.
    return ops.clip(ops.sum(weights * ops.sigmoid(frame_logits), axis=1), 0.0, 1.0)


def max_avg_pool(frame_logits: Any) -> Any:
    """[B, T, C] logits -> [B, C]: (max over time + mean over time) / 2 of the sigmoid scores."""
    probs = ops.sigmoid(frame_logits)  # [B, T, C]
    return (ops.max(probs, axis=1) + ops.mean(probs, axis=1)) / 2.0


@keras.saving.register_keras_serializable(package="rfcx")
class FrequencyMean(keras.layers.Layer):
    """[B, F, T, C] -> [B, T, C]: the mean over the frequency rows."""

    def call(self, x: Any) -> Any:
        return ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], *input_shape[2:])


@keras.saving.register_keras_serializable(package="rfcx")
class FrequencyMax(FrequencyMean):
    """[B, F, T, C] -> [B, T, C]: the max over the frequency rows."""

    def call(self, x: Any) -> Any:
        return ops.max(x, axis=1)


def frequency_pool(cfg: TrainConfig, name: str | None = None) -> keras.layers.Layer:
    """cfg.head_freq_pool's [B, F, T, C] -> [B, T, C] layer, named "freq_mean" / "freq_max" unless `name` is given."""
    if cfg.head_freq_pool == "max":
        return FrequencyMax(name=name or "freq_max")
    return FrequencyMean(name=name or "freq_mean")


@keras.saving.register_keras_serializable(package="rfcx")
class AttentionPooling(keras.layers.Layer):
    """[frame_logits [B, T, C], frame_attention [B, T, C]] -> scores [B, C] (`attention_pool`)."""

    def call(self, inputs: Any) -> Any:
        logits, attention = (ops.cast(x, self.compute_dtype) for x in inputs)
        return attention_pool(logits, attention)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], input_shape[0][2])


@keras.saving.register_keras_serializable(package="rfcx")
class MaxAvgPooling(keras.layers.Layer):
    """frame_logits [B, T, C] -> scores [B, C] (`max_avg_pool`)."""

    def call(self, frame_logits: Any) -> Any:
        return max_avg_pool(ops.cast(frame_logits, self.compute_dtype))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])


def gap_head(cfg: TrainConfig, features: Any) -> Any:
    """The seed's head: [B, F', T', D] -> [B, C]. Layers and their order are those of every earlier run."""
    x = keras.layers.GlobalAveragePooling2D()(features)  # [B, D]
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", kernel_initializer="he_normal")(x)  # [B, units]
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    # float32 whatever the global policy: scores, loss and LWLRAP stay exact under mixed precision.
    return keras.layers.Dense(cfg.num_classes, activation=cfg.loss, kernel_initializer="he_normal",
                              dtype="float32", name=SCORES)(x)  # [B, num_classes]


def framewise_head(cfg: TrainConfig, features: Any) -> Any:
    """"attention" or "max_avg": [B, F', T', D] -> [B, C] from framewise scores (shapes: module docstring)."""
    # [B, T', D]: each channel's mean over the F' rows, or its peak (a narrow-band call is not averaged with the
    # other bands' content).
    x = frequency_pool(cfg)(features)
    # PANNs' smoothing: each frame also sees its neighbours' peak and mean (stride 1: T' kept).
    peak = keras.layers.MaxPooling1D(3, strides=1, padding="same", name="time_max")(x)  # [B, T', D]
    mean = keras.layers.AveragePooling1D(3, strides=1, padding="same", name="time_avg")(x)  # [B, T', D]
    x = keras.layers.Add(name="time_smooth")([peak, mean])
    # BatchNormalization (over batch and time, per channel) before each Dense, as in the seed's head:
    # the backbone's last activations (a ReLU) are neither centred nor scaled, and fed
    # to the Dense layers as they are they drive the frame logits far out, into the sigmoids' flat ends.
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", kernel_initializer="he_normal",
                           name=FRAME_EMBEDDING)(x)  # Dense acts on the last axis: [B, T', units]
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    # The last Dense layers in float32, as the seed head's: the pooled scores stay exact under mixed precision.
    logits = keras.layers.Dense(cfg.num_classes, kernel_initializer="he_normal", dtype="float32",
                                name="frame_logits")(x)  # [B, T', C]
    if cfg.head == "max_avg":
        return MaxAvgPooling(dtype="float32", name=SCORES)(logits)  # [B, C]
    attention = keras.layers.Dense(cfg.num_classes, kernel_initializer="he_normal", dtype="float32",
                                   name="frame_attention")(x)  # [B, T', C]
    return AttentionPooling(dtype="float32", name=SCORES)([logits, attention])  # [B, C]


def build_head(cfg: TrainConfig, features: Any) -> Any:
    """The scores [B, num_classes] of cfg.head on the backbone output `features` [B, F', T', D]."""
    if cfg.head == "gap":
        return gap_head(cfg, features)
    return framewise_head(cfg, features)


def embedding_output(model: keras.Model) -> Any:
    """The embedding [B, D] of a model built by trainer.model.network, as a tensor of its graph.

    Framewise heads: their "frame_embedding" [B, T', units] averaged over time (a weightless layer added
    after it, outside the trained graph). The seed's head (and every model saved before the heads
    existed): the output of the penultimate Dense layer, Dense(units) after its relu. ValueError for
    another model.
    """
    names = {layer.name for layer in model.layers}
    if FRAME_EMBEDDING in names:
        frames = model.get_layer(FRAME_EMBEDDING).output  # [B, T', units]
        return keras.layers.GlobalAveragePooling1D(dtype="float32", name="embedding")(frames)  # [B, units]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) < 2 or dense[-1].output is not model.outputs[0]:
        raise ValueError(f"model {model.name} has none of trainer.model.heads' heads (no {FRAME_EMBEDDING!r} "
                         f"layer, no Dense(units) ... Dense(num_classes) at its end); cannot find its embedding")
    return dense[-2].output  # [B, units]
