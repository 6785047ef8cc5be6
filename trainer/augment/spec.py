"""Augmentations on log-mel features, as TensorFlow ops: SpecAugment masks and mixup.

They run after the mel front end in the training tf.data graph (trainer.data.inputs): the masks per
example, mixup per batch. Settings are in trainer.augment.chain.AugmentConfig (`--augment.time_masks`,
`--augment.freq_masks`, `--augment.mixup_p`, ...); `enabled=False` turns them off with the rest.

* `mask`: `time_masks` stripes of 0..time_mask_fraction x frames and `freq_masks` of
  0..freq_mask_fraction x mel bands, each set to the example's mean (a neutral value for any input
  scaling), at uniformly drawn positions (Park et al. 2019, without time warping).
* `mixup`: a `mixup_p` share of the batch's examples become lam * x_i + (1 - lam) * x_j with j a
  random other example and lam ~ Beta(alpha, alpha); their targets combine as trainer.data.targets.mix
  says (positives of both; a negative only where both sides know it).

    x = mask(x, cfg.augment, seed)                              # [n_mels, frames, 1], seed [2]
    x, y = mixup(x, y, cfg.augment, partial(targets.mix, num_classes=24), seed)  # [B, n_mels, frames, 1], [B, 2C]
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from trainer.augment.chain import AugmentConfig


def _stripes(length: int, count: int, max_fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """bool [length]: True inside `count` stripes of width 0..floor(max_fraction * length) each."""
    max_width = int(max_fraction * length)
    keep = tf.zeros([length], tf.bool)
    if count == 0 or max_width == 0:
        return keep
    positions = tf.range(length)
    for i in range(count):
        width = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 2 * i),
                                            minval=0, maxval=max_width + 1, dtype=tf.int32)
        start = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 2 * i + 1),
                                            minval=0, maxval=length - width + 1, dtype=tf.int32)
        keep |= (positions >= start) & (positions < start + width)
    return keep


def masking_enabled(cfg: AugmentConfig) -> bool:
    return cfg.enabled and (cfg.time_masks > 0 or cfg.freq_masks > 0)


def mask(x: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """SpecAugment time and frequency masks on one example [n_mels, frames, 1] (static shape)."""
    if not masking_enabled(cfg):
        return x
    n_mels, frames = int(x.shape[0]), int(x.shape[1])
    in_freq = _stripes(n_mels, cfg.freq_masks, cfg.freq_mask_fraction, tf.random.experimental.stateless_fold_in(seed, 0))
    in_time = _stripes(frames, cfg.time_masks, cfg.time_mask_fraction, tf.random.experimental.stateless_fold_in(seed, 1))
    masked = in_freq[:, tf.newaxis, tf.newaxis] | in_time[tf.newaxis, :, tf.newaxis]  # [n_mels, frames, 1]
    return tf.where(masked, tf.reduce_mean(x), x)


def mixup_enabled(cfg: AugmentConfig) -> bool:
    return cfg.enabled and cfg.mixup_p > 0.0


def _beta(shape: tf.Tensor, alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """Beta(alpha, alpha) samples as g1 / (g1 + g2) of two stateless gamma draws."""
    g1 = tf.random.stateless_gamma(shape, tf.random.experimental.stateless_fold_in(seed, 0), alpha)
    g2 = tf.random.stateless_gamma(shape, tf.random.experimental.stateless_fold_in(seed, 1), alpha)
    return g1 / tf.maximum(g1 + g2, 1e-12)


def mixup(x: tf.Tensor, y: tf.Tensor, cfg: AugmentConfig, mix_targets: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
          seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup inside one batch: x [B, ...], y [B, 2C] -> same shapes (see the module docstring).

    mix_targets(y_a, y_b) -> the targets of an even mix of two examples (the trainer passes
    trainer.data.targets.mix, which knows the layout of y).
    """
    if not mixup_enabled(cfg):
        return x, y
    batch = tf.shape(x)[0]
    # A partner that is never the example itself: i + a shift in 1 .. B-1 (mod B).
    shift = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 0), minval=1,
                                        maxval=tf.maximum(batch, 2), dtype=tf.int32)
    partner = (tf.range(batch) + shift) % batch
    chosen = tf.random.stateless_uniform([batch], tf.random.experimental.stateless_fold_in(seed, 1)) < cfg.mixup_p
    chosen &= batch > 1
    lam = _beta([batch], cfg.mixup_alpha, tf.random.experimental.stateless_fold_in(seed, 2))
    lam = tf.where(chosen, lam, 1.0)  # [B]
    lam_x = tf.reshape(lam, [-1] + [1] * (x.shape.rank - 1))
    mixed_x = lam_x * x + (1.0 - lam_x) * tf.gather(x, partner)
    mixed_y = tf.where(chosen[:, tf.newaxis], mix_targets(y, tf.gather(y, partner)), y)
    return mixed_x, mixed_y
