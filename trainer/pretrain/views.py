"""The pretraining input: endless batches of two augmented views of one window of unlabelled audio.

    train slices of every fold and kind --endless, shuffled--\\
                                                               sample_from_datasets (1 - test_share, test_share)
    whole test recordings --endless, shuffled----------------/
      --> enumerate i --> parse the audio only (no labels are read) --> int16 -> float32 [n]
      --> window A at a random start, window B up to max_shift_seconds from it (same audio) [window] each
      --> each view: its own background window of another recording mixed in (augment.background_mix_p),
          the numpy chain (trainer.augment.chain, tf.numpy_function), log-mel, SpecAugment masks, all seeded by
          (seed, i, view) --> ({view_a, view_b}: [n_mels, frames, 1] each, 0.0)
      --> batch(drop_remainder) --> prefetch

The augmentation is the TrainConfig's (the chain the folds train with; stronger settings make the pair differ
more and the task harder). The log-mel is computed here, on the host, whatever --mel.device says.

    from trainer.pretrain import views
    sources = views.find_sources(shards_dir, cfg)
    batches = views.pair_dataset(sources, cfg, pcfg, global_batch=32)
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping

import tensorflow as tf

from core import schema
from core.errors import UserError
from trainer.augment import spec as spec_augment
from trainer.data import discovery, inputs, records
from trainer.pretrain.config import PretrainConfig
from trainer.pretrain.encoder import VIEW_A, VIEW_B
from trainer.recipe.config import TrainConfig

log = logging.getLogger("trainer.pretrain.views")

_SALT = 11  # element seeds of the pairs: a stream of their own, apart from the trainer's (salt 0, 1, 3)
_TEST_SHUFFLE = 8  # whole test recordings are ~6 MB each at 48 kHz: a small shuffle buffer of them
_SPEC = {"audio": tf.io.FixedLenFeature([], tf.string), "recording_id": tf.io.FixedLenFeature([], tf.string)}


@dataclasses.dataclass(frozen=True)
class Sources:
    """The shard files pretraining reads (absolute), with the manifest's record counts (None where it lacks them)."""

    train_files: tuple[str, ...]  # every fold, every kind
    test_files: tuple[str, ...]
    background_files: tuple[str, ...]  # every fold's background slices (the mixing partners)
    num_train: int | None
    num_test: int | None
    num_background: int | None


def find_sources(shards_dir: str, cfg: TrainConfig) -> Sources:
    """The checked shard files of every fold and the test set; ShardsError/SchemaError for unusable shards."""
    manifest = discovery.read_manifest(shards_dir)
    folds = manifest.folds_with_shards()
    if not folds:
        raise UserError(f"{shards_dir} holds no training slices to pretrain on")
    train = discovery.absolute(shards_dir, [f for k in folds for f in manifest.train_files(k)])
    background = discovery.absolute(shards_dir, [f for k in folds
                                                 for f in manifest.kind_files(k, schema.KIND_BACKGROUND)])
    test = discovery.absolute(shards_dir, list(manifest.test))
    discovery.check_exist(train + test, shards_dir)
    discovery.check_compatible(manifest, discovery.first_records(train + test), cfg, shards_dir)

    def total(kind: str | None) -> int | None:
        counts = [manifest.examples(k, kind) for k in folds]
        return None if any(c is None for c in counts) else sum(counts)

    return Sources(tuple(train), tuple(test), tuple(background), total(None),
                   manifest.test_examples if test else None, total(schema.KIND_BACKGROUND))


def source_records(sources: Sources, cfg: TrainConfig, pcfg: PretrainConfig) -> tf.data.Dataset:
    """The endless stream of serialized records (train slices and test recordings) the pairs are cut from."""
    seed = cfg.seed * 1_000_003 + 17
    train = inputs.endless_records(list(sources.train_files), cfg, seed, sources.num_train)
    if pcfg.test_share == 0.0:
        return train
    if not sources.test_files:
        log.warning("the shards hold no test recordings: pretraining on the training slices alone "
                    "(--pretrain.test_share %s asked for test audio)", pcfg.test_share)
        return train
    test_cfg = dataclasses.replace(cfg, shuffle_buffer=min(cfg.shuffle_buffer, _TEST_SHUFFLE))
    test = inputs.endless_records(list(sources.test_files), test_cfg, seed + 2, sources.num_test)
    if pcfg.test_share == 1.0:
        return test
    return tf.data.Dataset.sample_from_datasets([train, test], weights=[1.0 - pcfg.test_share, pcfg.test_share],
                                                seed=seed + 4)


def view_offsets(num_samples: tf.Tensor, window: int, max_shift: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(start A, start B) int64: A uniform over the audio's window starts, B within max_shift samples of A,
    both inside the audio (0 when it is shorter than the window; crop_window pads)."""
    last = tf.maximum(tf.cast(num_samples, tf.int64) - window, 0)
    start_a = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 0), minval=0,
                                          maxval=last + 1, dtype=tf.int64)
    delta = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 1), minval=-max_shift,
                                        maxval=max_shift + 1, dtype=tf.int64)
    return start_a, tf.clip_by_value(start_a + delta, 0, last)


def pair_element_fn(cfg: TrainConfig, pcfg: PretrainConfig):  # noqa: ANN201 (a tf.data map function)
    """(draw index, serialized record[, backgrounds {"waveform" [2, window], "recording_id" [2]}]) ->
    ({VIEW_A, VIEW_B: [n_mels, frames, 1]}, 0.0)."""
    augment, max_pitch_steps = inputs.augment_fn(cfg)
    window = discovery.window_samples(cfg)
    max_shift = int(round(pcfg.max_shift_seconds * cfg.mel.sample_rate))

    def element(index: tf.Tensor, record: tf.Tensor,
                backgrounds: Mapping[str, tf.Tensor] | None = None) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        seed = inputs.element_seed(cfg, index, salt=_SALT)
        parsed = tf.io.parse_single_example(record, _SPEC)
        audio = records.pcm16_to_float(parsed["audio"])  # [n]
        starts = view_offsets(tf.size(audio, out_type=tf.int64), window, max_shift, seed)
        views = []
        for v, start in enumerate(starts):
            waveform = inputs.crop_window(audio, start, window)  # [window]
            other = None
            if backgrounds is not None:  # a background of the view's own recording is left out (silence)
                same = tf.equal(backgrounds["recording_id"][v], parsed["recording_id"])
                other = tf.where(same, tf.zeros([window]), backgrounds["waveform"][v])  # [window]
            view_seed = tf.random.experimental.stateless_fold_in(seed, 2 + v)
            waveform, steps = augment(waveform, tf.random.experimental.stateless_fold_in(view_seed, 0), other)
            x = inputs.features(waveform, cfg, steps, max_pitch_steps)  # [n_mels, frames, 1]
            views.append(spec_augment.mask(x, cfg.augment, tf.random.experimental.stateless_fold_in(view_seed, 1)))
        return {VIEW_A: views[0], VIEW_B: views[1]}, tf.constant(0.0)

    return element


def pair_dataset(sources: Sources, cfg: TrainConfig, pcfg: PretrainConfig, global_batch: int,
                 num_batches: int | None = None) -> tf.data.Dataset:
    """({VIEW_A, VIEW_B: [B, n_mels, frames, 1]}, [B] zeros) batches: num_batches of them (default the run's,
    pcfg.epochs x pcfg.steps_per_epoch)."""
    num_batches = pcfg.epochs * pcfg.steps_per_epoch if num_batches is None else num_batches
    draws = source_records(sources, cfg, pcfg).take(num_batches * global_batch).enumerate()
    element = pair_element_fn(cfg, pcfg)
    if cfg.augment.enabled and cfg.augment.background_mix_p > 0:
        backgrounds = inputs.background_windows(list(sources.background_files), cfg, 0,
                                                sources.num_background).batch(2)  # two per pair: one a view
        examples = tf.data.Dataset.zip((draws, backgrounds)).map(
            lambda draw, background: element(*draw, background),
            num_parallel_calls=inputs.AUTOTUNE, deterministic=cfg.deterministic)
    else:
        examples = draws.map(element, num_parallel_calls=inputs.AUTOTUNE, deterministic=cfg.deterministic)
    return (examples.batch(global_batch, drop_remainder=True)  # [B, n_mels, frames, 1] per view
            .prefetch(inputs.AUTOTUNE).with_options(inputs.input_options()))
