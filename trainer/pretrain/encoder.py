"""The pretraining networks: the encoder (the classifier's trunk + a projection) and the pair model over two views.

    log-mel [B, n_mels, frames, 1] --trunk (trainer.model.network.build_trunk: band_norm, channels,
      backbone; the classifier's layers and names)--> [B, F', T', D]
      --pool over frequency (cfg.head_freq_pool, as the framewise heads)--> [B, T', D]
      --(max + mean) over time / 2--> [B, D] --Dense(projection_units, relu)--> --Dense(embedding_dim)-->
      --unit length--> "embedding" [B, E] (float32)
    pair model: (view_a, view_b) [B, n_mels, frames, 1] each --the one encoder--> [B, 2E] = [a ‖ b]

Only the trunk is kept for fine-tuning (trainer.model.transfer); the projection exists for the loss.

    from trainer.pretrain import encoder
    enc = encoder.build_encoder(cfg, pcfg, (64, 141, 1), band_stats)
    pair = encoder.build_pair_model(enc)
"""
from __future__ import annotations

import keras
import numpy as np

from trainer.model import heads, network
from trainer.pretrain.config import PretrainConfig
from trainer.recipe.config import TrainConfig

ENCODER_NAME = "pretrain_encoder"
VIEW_A, VIEW_B = "view_a", "view_b"


def build_encoder(cfg: TrainConfig, pcfg: PretrainConfig, input_shape: tuple[int, int, int],
                  band_stats: tuple[np.ndarray, np.ndarray] | None = None) -> keras.Model:
    """log-mel [B, *input_shape] -> unit embeddings [B, pcfg.embedding_dim] (module docstring)."""
    network.check_input_shape(cfg, input_shape)
    inputs = keras.Input(shape=input_shape, name="log_mel")
    x = network.build_trunk(cfg, inputs, band_stats)  # [B, F', T', D]
    x = heads.frequency_pool(cfg, name="projection_freq_pool")(x)  # [B, T', D]
    peak = keras.layers.GlobalMaxPooling1D(name="projection_time_max")(x)  # [B, D]
    mean = keras.layers.GlobalAveragePooling1D(name="projection_time_mean")(x)  # [B, D]
    x = keras.layers.Average(name="projection_time_pool")([peak, mean])
    x = keras.layers.Dense(pcfg.projection_units, activation="relu", name="projection_hidden")(x)
    x = keras.layers.Dense(pcfg.embedding_dim, name="projection_out", dtype="float32")(x)  # [B, E]
    z = keras.layers.UnitNormalization(name="embedding", dtype="float32")(x)
    net = keras.Model(inputs, z, name=ENCODER_NAME)
    network.set_batch_norm(net, cfg)
    return net


def build_pair_model(encoder: keras.Model) -> keras.Model:
    """(view_a, view_b) -> [B, 2E]: both views through the same encoder (shared weights), side by side."""
    shape = tuple(encoder.input_shape[1:])
    a = keras.Input(shape=shape, name=VIEW_A)
    b = keras.Input(shape=shape, name=VIEW_B)
    pair = keras.layers.Concatenate(name="pair", dtype="float32")([encoder(a), encoder(b)])  # [B, 2E]
    return keras.Model({VIEW_A: a, VIEW_B: b}, pair, name="pretrain_pairs")
