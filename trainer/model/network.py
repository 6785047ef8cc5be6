"""The classifier: a backbone trained from scratch (trainer.model.backbones; ResNet50 by default) on the log-mel
input, then a head (trainer.model.heads).

    [B, n_mels, frames, 1] --band_norm: (x - mean[band]) / std[band], training statistics--> same
      --floor_channel: concat x minus its per-band floor (the floor_quantile over frames)--> [B, n_mels, frames, 2]
      --freq_channel: concat the mel-bin index scaled to [-1, 1]--> [B, n_mels, frames, 2 or 3]
      --backbone (cfg.backbone; default ResNet50(include_top=False, weights=None))--> [B, F', T', D]
        (ResNet50: F' = ceil(n_mels/32), T' = ceil(frames/32), D = 2048)
      --head (cfg.head; default "gap", the seed's: GlobalAveragePooling2D, BN, Dropout, Dense(1024, relu),
        BN, Dropout, Dense(num_classes, sigmoid|softmax, float32); "attention" / "max_avg": framewise
        scores pooled over time)--> [B, num_classes] scores

The input shape comes from the config (n_mels, mel.num_frames(window)), so it always equals what
the input pipeline produces (the seed built the model for 256 x 1876 but fed it 128 x 1876).
Both extras live inside the model, so best.keras and the serving model take the plain log-mel; they and
the heads' custom layers are registered Keras serializables (package "rfcx"), importing this module
registers them all.
Default: sigmoid scores + binary cross-entropy masked to the known labels (trainer.model.losses, packed
targets of trainer.data.targets); loss "softmax" is the seed's softmax + categorical cross-entropy. The
last layer ("scores") computes in float32 under mixed precision. compile_model XLA-compiles the steps per
cfg.jit_compile (by default Keras' own rule).

    from trainer.model import network
    net = network.build_model(cfg, input_shape=(128, 938, 1), band_stats=(mean, variance))  # [n_mels] each
    network.compile_model(net, cfg, steps_per_epoch=25)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import keras
import numpy as np
from keras import ops

from core.errors import UserError
from core.settings import ConfigError
from trainer.evaluation.lwlrap import LWLRAP
from trainer.model import backbones, heads
from trainer.model.losses import LabelsCategoricalCrossentropy, MaskedBinaryCrossentropy

if TYPE_CHECKING:  # annotations only: this module builds and compiles on any Keras backend (no TensorFlow import)
    from trainer.recipe.config import TrainConfig


def check_input_shape(cfg: TrainConfig, input_shape: tuple[int, int, int]) -> None:
    """UserError unless (n_mels, frames, 1) is at least cfg.backbone's minimum (ResNet50: 32 x 32)."""
    height, width, _ = input_shape
    least = backbones.min_input_size(cfg)
    if height < least or width < least:
        raise UserError(
            f"model input {height} mels x {width} frames is smaller than the {cfg.backbone} backbone's minimum "
            f"{least} x {least}; raise --mel.n_mels, lengthen --window_seconds or lower --mel.hop_length")


@keras.saving.register_keras_serializable(package="rfcx")
class FrequencyChannel(keras.layers.Layer):
    """[B, n_mels, frames, C] -> [B, n_mels, frames, C + 1]: a channel holding each row's mel-bin index.

    The index is scaled to [-1, 1] (lowest band -1). Convolutions are translation-invariant, so
    without it the network cannot tell a call at 2 kHz from the same shape at 3 kHz except through
    the image border; RFCX species differ above all by band.
    """

    def call(self, x: Any) -> Any:
        n_mels = x.shape[1]
        ramp = ops.reshape(ops.linspace(-1.0, 1.0, n_mels), (1, n_mels, 1, 1))  # [1, n_mels, 1, 1]
        ramp = ops.cast(ramp, x.dtype) * ops.ones_like(x[..., :1])  # [B, n_mels, frames, 1]
        return ops.concatenate([x, ramp], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="rfcx")
class FloorChannel(keras.layers.Layer):
    """[B, n_mels, frames, C] -> [B, n_mels, frames, C + 1]: channel 0 minus its per-band floor, per example.

    The floor of a band is the `quantile` of its frames (a low quantile: the window's own noise bed in that
    band, which a call occupying part of the window leaves in place). Field noise (rain, wind, an engine) sets
    each recording's bed per band, so a call's level above its own bed says more than its absolute level, which
    band_norm's training-wide statistics keep; the model gets both.
    """

    def __init__(self, quantile: float = 0.25, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
        self.quantile = float(quantile)

    def call(self, x: Any) -> Any:
        frames = x.shape[2]
        k = int(self.quantile * (frames - 1))  # numpy's quantile(..., method="lower")
        first = x[..., 0]  # [B, n_mels, frames]
        floor = ops.sort(first, axis=-1)[..., k : k + 1]  # [B, n_mels, 1]
        return ops.concatenate([x, (first - floor)[..., None]], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantile": self.quantile}


def iter_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """`layer` and every layer nested in it, through the public `layers` of models."""
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from iter_layers(inner)


def replicas_in_sync() -> int:
    """Replicas of the tf.distribute strategy in scope; 1 outside one and on Keras backends other than TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf  # deferred: the model builds on other backends too (benchmarks/bench_keras_jax.py)

    return tf.distribute.get_strategy().num_replicas_in_sync


def build_model(cfg: TrainConfig, input_shape: tuple[int, int, int],
                band_stats: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """cfg.backbone + cfg.head's head for `input_shape` = (n_mels, frames, 1); UserError if too small.

    band_stats: (mean, variance) float [n_mels] of the training inputs, required when cfg.band_norm.
    """
    check_input_shape(cfg, input_shape)
    inputs = keras.Input(shape=input_shape, name="log_mel")
    x = build_trunk(cfg, inputs, band_stats)  # [B, F', T', D]
    scores = heads.build_head(cfg, x)  # [B, num_classes], the layer "scores", float32
    net = keras.Model(inputs, scores, name=f"rfcx_{cfg.backbone}")
    set_batch_norm(net, cfg)
    return net


def build_trunk(cfg: TrainConfig, inputs: Any, band_stats: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """The layers before the head: log-mel [B, n_mels, frames, 1] -> feature map [B, F', T', D] (module docstring).

    Shared by the classifier and the pretraining encoder (trainer.pretrain.encoder), whose layer names are
    therefore the same: trainer.model.transfer copies weights between them by name.
    """
    x = inputs
    if cfg.band_norm:
        if band_stats is None:
            raise ValueError("band_norm needs the training data's per-band (mean, variance)")
        mean, variance = (np.asarray(v, np.float32).reshape(-1) for v in band_stats)  # [n_mels] each
        x = keras.layers.Normalization(axis=1, mean=mean, variance=variance, name="band_norm")(x)
    if cfg.floor_channel:
        x = FloorChannel(cfg.floor_quantile, name="floor_channel")(x)  # [B, n_mels, frames, C + 1]
    if cfg.freq_channel:
        x = FrequencyChannel(name="freq_channel")(x)  # [B, n_mels, frames, C + 1]
    return backbones.build_backbone(cfg, x)  # [B, F', T', D]


def set_batch_norm(net: keras.Model, cfg: TrainConfig) -> None:
    """cfg.bn_momentum on every BatchNormalization of `net`, synchronised across replicas when there are several."""
    # keras.applications and backbones.cnn_stack build their BatchNormalization layers with the default
    # momentum; the moving averages are only read outside training, so setting it before compile is enough.
    # With several replicas (built in a MirroredStrategy/TPU scope), each replica would update its own
    # copy of the moving averages from its share of the batch: validation would then score each part
    # of a batch with other statistics than the saved model holds (replica 0's). Batch statistics
    # synchronised across replicas keep every copy equal.
    synchronized = replicas_in_sync() > 1
    for layer in iter_layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
            layer.synchronized = synchronized


def learning_rate(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """A float (constant) or a keras LearningRateSchedule over optimizer steps."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if cfg.lr_schedule == "exponential":  # x lr_decay_rate per epoch, smoothly
        return keras.optimizers.schedules.ExponentialDecay(cfg.learning_rate, steps_per_epoch, cfg.lr_decay_rate)
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=cfg.learning_rate, warmup_steps=warmup)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """cfg's optimizer on its learning-rate schedule; with cfg.ema_momentum it also averages the weights."""
    lr = learning_rate(cfg, steps_per_epoch)
    # Keras' weight averaging: the optimizer holds the average, trainer.training.callbacks.AveragedWeights swaps it in.
    ema = {"use_ema": True, "ema_momentum": cfg.ema_momentum} if cfg.ema_momentum else {}
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, **ema)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, **ema)
    return keras.optimizers.Adam(lr, **ema)


# cfg.jit_compile -> Keras' compile(jit_compile=...).
_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}


def compile_model(net: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    """Optimizer, loss matching the output activation (on packed targets), the streaming LWLRAP metric, and
    XLA compilation of the steps per cfg.jit_compile; ConfigError when "on" cannot be honoured."""
    loss = (LabelsCategoricalCrossentropy(cfg.num_classes) if cfg.loss == "softmax"
            else MaskedBinaryCrossentropy(cfg.num_classes))
    net.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=loss,
                metrics=[LWLRAP(num_classes=cfg.num_classes)], jit_compile=_JIT_COMPILE[cfg.jit_compile])
    if cfg.jit_compile == "on" and not net.jit_compile:
        # Keras falls back to no XLA with only a warning (a layer without XLA support, or op determinism on).
        raise ConfigError("jit_compile=on, but Keras cannot XLA-compile this model here (see its warning above); "
                          "use --jit_compile auto or off")
    # Creating the optimizer's slots now, eagerly, instead of inside the first traced train step
    # spares tf.function a second trace of the whole step (~25 s for ResNet50 on a CPU).
    net.optimizer.build(net.trainable_variables)
