"""Augmentations on log-mel features, as TensorFlow ops: SpecAugment masks and mixup.

Settings are in trainer.augment.chain.AugmentConfig (`--augment.time_masks`, `--augment.freq_masks`,
`--augment.mixup_p`, ...); `enabled=False` turns them off with the rest.

* `mask`: `time_masks` stripes of 0..time_mask_fraction x frames and `freq_masks` of
  0..freq_mask_fraction x mel bands, each set to the example's mean (a neutral value for any input
  scaling), at uniformly drawn positions (Park et al. 2019, without time warping).
* `mixup`: a `mixup_p` share of the batch's examples become lam * x_i + (1 - lam) * x_j with j a
  random other example and lam ~ Beta(alpha, alpha); their targets combine as trainer.data.targets.mix
  says (positives of both; a negative only where both sides know it).

Each is a draw (`draw_masks`, `draw_mixup`: small tensors from a stateless seed) and an application
(`apply_masks`, `mix_features`, `mix_labels`). With the log-mel in the input pipeline
(`--mel.device host`, trainer.data.inputs) both run there: the masks per example, mixup per batch.
With the log-mel in the model (`--mel.device model`) the draws stay in the input pipeline, seeded
as before, and the model applies them to the log-mels it computes (trainer.model.front_end), at
training time only; the targets are mixed in the input pipeline. Mixup cannot move to the
waveforms instead: the log-mel of a mix is not the mix of the log-mels (log and per-example
scaling), so that would be another augmentation. Drawn the same way, both placements give the
same log-mels and targets.

    x = mask(x, cfg.augment, seed)                              # [n_mels, frames, 1], seed [2]
    x, y = mixup(x, y, cfg.augment, partial(targets.mix, num_classes=24), seed)  # [B, n_mels, frames, 1], [B, 2C]
    in_freq, in_time = draw_masks(128, 938, cfg.augment, seed)  # bool [128], [938]
    partner, lam, chosen = draw_mixup(32, cfg.augment, seed)    # [32] each
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


def draw_masks(n_mels: int, frames: int, cfg: AugmentConfig, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The stripes of one example's masks: (in_freq bool [n_mels], in_time bool [frames]); all False if off."""
    if not masking_enabled(cfg):
        return tf.zeros([n_mels], tf.bool), tf.zeros([frames], tf.bool)
    fold_in = tf.random.experimental.stateless_fold_in
    in_freq = _stripes(n_mels, cfg.freq_masks, cfg.freq_mask_fraction, fold_in(seed, 0))
    in_time = _stripes(frames, cfg.time_masks, cfg.time_mask_fraction, fold_in(seed, 1))
    return in_freq, in_time


def apply_masks(x: tf.Tensor, in_freq: tf.Tensor, in_time: tf.Tensor) -> tf.Tensor:
    """x [..., n_mels, frames, 1] with the bands in_freq [..., n_mels] and frames in_time [..., frames] set to
    each example's mean (one example or a batch)."""
    # [..., n_mels, frames, 1]
    masked = in_freq[..., :, tf.newaxis, tf.newaxis] | in_time[..., tf.newaxis, :, tf.newaxis]
    return tf.where(masked, tf.reduce_mean(x, axis=[-3, -2, -1], keepdims=True), x)


def mask(x: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """SpecAugment time and frequency masks on one example [n_mels, frames, 1] (static shape)."""
    if not masking_enabled(cfg):
        return x
    return apply_masks(x, *draw_masks(int(x.shape[0]), int(x.shape[1]), cfg, seed))


def mixup_enabled(cfg: AugmentConfig) -> bool:
    return cfg.enabled and cfg.mixup_p > 0.0


def _beta(shape: tf.Tensor, alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """Beta(alpha, alpha) samples as g1 / (g1 + g2) of two stateless gamma draws."""
    g1 = tf.random.stateless_gamma(shape, tf.random.experimental.stateless_fold_in(seed, 0), alpha)
    g2 = tf.random.stateless_gamma(shape, tf.random.experimental.stateless_fold_in(seed, 1), alpha)
    return g1 / tf.maximum(g1 + g2, 1e-12)


def draw_mixup(batch: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor,
               replicas: int = 1) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Who mixes with whom in a batch of `batch`: (partner int32 [B], lam float32 [B], chosen bool [B]).

    Example i becomes lam[i] * x_i + (1 - lam[i]) * x_partner[i]; lam is 1 where not `chosen`. With
    `replicas` > 1 the batch is taken as that many equal consecutive parts (what each replica of a
    distribution strategy receives) and partners are drawn inside each part, so a model-side mixup
    (trainer.model.front_end) finds the partner on its own replica.
    """
    part = batch // replicas
    # A partner that is never the example itself: i + a shift in 1 .. part-1 (mod part), inside i's part.
    shift = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 0), minval=1,
                                        maxval=tf.maximum(part, 2), dtype=tf.int32)
    index = tf.range(batch)
    partner = index - index % part + (index % part + shift) % part
    chosen = tf.random.stateless_uniform([batch], tf.random.experimental.stateless_fold_in(seed, 1)) < cfg.mixup_p
    chosen &= part > 1
    lam = _beta([batch], cfg.mixup_alpha, tf.random.experimental.stateless_fold_in(seed, 2))
    return partner, tf.where(chosen, lam, 1.0), chosen


def mix_features(x: tf.Tensor, partner: tf.Tensor, lam: tf.Tensor) -> tf.Tensor:
    """lam * x + (1 - lam) * x[partner] per example: x [B, ...], partner int [B], lam [B] -> x's shape.

    partner is taken modulo B, so a replica holding one part of a batch drawn by draw_mixup(replicas=R)
    finds its partners in its own part.
    """
    lam_x = tf.reshape(tf.cast(lam, x.dtype), [-1] + [1] * (x.shape.rank - 1))
    return lam_x * x + (1.0 - lam_x) * tf.gather(x, partner % tf.shape(x, out_type=partner.dtype)[0])


def mix_labels(y: tf.Tensor, partner: tf.Tensor, chosen: tf.Tensor,
               mix_targets: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """The targets [B, 2C] of the mixed examples: mix_targets(y_i, y_partner) where chosen, else y_i."""
    return tf.where(chosen[:, tf.newaxis], mix_targets(y, tf.gather(y, partner)), y)


def mixup(x: tf.Tensor, y: tf.Tensor, cfg: AugmentConfig, mix_targets: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
          seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup inside one batch: x [B, ...], y [B, 2C] -> same shapes (see the module docstring).

    mix_targets(y_a, y_b) -> the targets of an even mix of two examples (the trainer passes
    trainer.data.targets.mix, which knows the layout of y).
    """
    if not mixup_enabled(cfg):
        return x, y
    partner, lam, chosen = draw_mixup(tf.shape(x)[0], cfg, seed)
    return mix_features(x, partner, lam), mix_labels(y, partner, chosen, mix_targets)
