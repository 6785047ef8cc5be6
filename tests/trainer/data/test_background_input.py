"""Background mixing wired into trainer.data.inputs: a second stream of background windows, zipped in before the
numpy chain; the targets stay as they were.

The shards (tests.helpers.shard_factory.three_kind_folds) hold ramp audio; the background windows come from
the training folds' background slices.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core import schema
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import RATE, small_config
from trainer.data import discovery, inputs, records

WINDOW = 16000
ONLY_MIX = {"enabled": True, "noise_p": 0.0, "time_shift_p": 0.0, "volume_p": 0.0, "background_mix_p": 1.0,
            "background_snr_db_min": 0.0, "background_snr_db_max": 0.0}


def test_background_windows_come_from_the_training_folds_background_slices(shards):
    cfg = small_config(augment=ONLY_MIX)
    fold = discovery.prepare_fold(shards, 0, cfg)
    files = fold.train_files_by_kind[schema.KIND_BACKGROUND]
    windows = list(inputs.background_windows(files, cfg, 0).take(12).as_numpy_iterator())
    assert {w["recording_id"] for w in windows} <= {b"rec1_0", b"rec1_1", b"rec2_0", b"rec2_1"}  # not fold 0's
    assert all(w["waveform"].shape == (WINDOW,) for w in windows)
    with pytest.raises(records.ShardsError, match="background slices"):
        inputs.background_windows([], cfg, 0)


def test_mixing_changes_the_input_and_keeps_the_targets(shards):
    plain = small_config(negative_fraction=0.0, augment={**ONLY_MIX, "background_mix_p": 0.0})
    mixed = small_config(negative_fraction=0.0, augment=ONLY_MIX)
    files = discovery.prepare_fold(shards, 0, plain).train_files_by_kind
    x0, y0 = next(iter(inputs.train_dataset(files, plain, 8, 2)))
    x1, y1 = next(iter(inputs.train_dataset(files, mixed, 8, 2)))
    np.testing.assert_array_equal(y0.numpy(), y1.numpy())  # the same draws, the same targets
    assert not np.array_equal(x0.numpy(), x1.numpy())


def test_the_mix_adds_the_background_window_at_the_snr_and_never_one_of_its_own_recording():
    cfg = small_config(augment=ONLY_MIX)  # SNR 0 dB exactly
    augment_fn, _ = inputs.augment_fn(cfg)
    t = np.arange(WINDOW) / RATE
    call = tf.constant(0.3 * np.sin(2 * np.pi * 700 * t), tf.float32)
    background = tf.constant(np.random.default_rng(2).normal(0, 0.1, WINDOW), tf.float32)
    out, _ = augment_fn(call, tf.constant([1, 2], tf.int64), background)
    added = out.numpy() - call.numpy()
    assert np.corrcoef(added, background.numpy())[0, 1] > 0.9999
    assert abs(np.mean(call.numpy() ** 2) / np.mean(added ** 2) - 1.0) < 1e-3  # 0 dB

    element = inputs.train_element_fn(cfg)
    record = tf.constant(schema.serialize_example(schema.TRAIN_FIELDS, sf.train_example(
        "recA", 1, species=1, t_min=0.2, t_max=0.6, audio=sf.ramp(32000), sample_rate=RATE)))
    index = tf.constant(4, tf.int64)
    plain = element(index, record)["x"].numpy()
    own = element(index, record, {"waveform": background, "recording_id": tf.constant(b"recA")})["x"].numpy()
    other = element(index, record, {"waveform": background, "recording_id": tf.constant(b"recB")})["x"].numpy()
    np.testing.assert_array_equal(own, plain)  # a background of the window's own recording is left out
    assert not np.array_equal(other, plain)
