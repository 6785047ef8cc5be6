"""The convolutional backbones (TrainConfig.backbone): log-mel image -> feature map for the heads.

    [B, n_mels, frames, C] --backbone--> [B, F', T', D]
      "resnet50" (the seed's, the default): keras.applications.ResNet50(include_top=False, weights=None);
        F' = ceil(n_mels/32), T' = ceil(frames/32), D = 2048; needs inputs of at least 32 x 32.
      "mobilenetv2": keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=None); the same
        /32 grid, D = 1280, at a fraction of ResNet50's cost per step.
      "cnn": a VGG-style stack as PANNs' CNN6/CNN10 (Kong et al. 2020), sized for a CPU: cfg.cnn_blocks
        blocks of width w = cfg.cnn_width x 2^block, each [Conv2D(w, 3x3, no bias), BatchNorm, ReLU] x
        cfg.cnn_convs, with 2 x 2 average pooling after every block but the last;
        F' = n_mels / 2^(blocks-1), T' = frames / 2^(blocks-1) (floored at each pool), D = the last width.

Every backbone is trained from scratch (nothing is downloaded). Why "cnn" exists: at the `cpu` preset's
64 x 141 input, ResNet50's steps are so slow on a CPU that the steps that fit in a fold's budget leave it
under-fitting (docs/results.md, realistic benchmark); the stack downsamples by 8 instead of 32, keeping 8 mel
rows for the heads instead of 2, at a fraction of the step time. Its BatchNormalization layers get
cfg.bn_momentum like every other (trainer.model.network).

    from trainer.model import backbones
    features = backbones.build_backbone(cfg, x)  # KerasTensor [B, F', T', D]
    backbones.min_input_size(cfg)                # the smallest n_mels / frames the backbone accepts
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras

if TYPE_CHECKING:  # annotations only: the model modules import no TensorFlow (benchmarks/bench_keras_jax.py)
    from trainer.recipe.config import TrainConfig

# keras.applications' ResNet50 and MobileNetV2 downsample by 32 and refuse smaller inputs.
APPLICATIONS_MIN_SIZE = 32


def min_input_size(cfg: TrainConfig) -> int:
    """The smallest height and width (mel bands, frames) cfg.backbone accepts."""
    if cfg.backbone == "cnn":
        return 2 ** (cfg.cnn_blocks - 1)  # one row and column left after the last pooling
    return APPLICATIONS_MIN_SIZE


def cnn_stack(cfg: TrainConfig, x: Any) -> Any:
    """"cnn": [B, H, W, C] -> [B, H / 2^(n-1), W / 2^(n-1), cnn_width x 2^(n-1)] for n = cfg.cnn_blocks."""
    last = cfg.cnn_blocks - 1
    for block in range(cfg.cnn_blocks):
        width = cfg.cnn_width * 2 ** block
        for conv in range(cfg.cnn_convs):
            name = f"cnn_block{block + 1}_conv{conv + 1}"
            # No bias: the BatchNormalization after it has its own offset.
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                                    name=name)(x)
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
        if block < last:
            # Average, not max, pooling: PANNs' choice for spectrograms (keeps a call's energy, not one peak).
            x = keras.layers.AveragePooling2D(2, name=f"cnn_block{block + 1}_pool")(x)  # [B, H/2, W/2, width]
    return x


def build_backbone(cfg: TrainConfig, x: Any) -> Any:
    """The feature map [B, F', T', D] of cfg.backbone on `x` [B, n_mels, frames, C] (shapes: module docstring)."""
    if cfg.backbone == "cnn":
        return cnn_stack(cfg, x)
    shape = tuple(x.shape[1:])
    if cfg.backbone == "mobilenetv2":
        net = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=shape)
    else:
        net = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
    return net(x)
