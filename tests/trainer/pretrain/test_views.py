"""The pretraining pairs: where the two windows are cut, which audio they come from, and how the views differ."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core import manifest as shards_layout
from tests.helpers.recipe_config import recipe_config
from trainer.data import discovery
from trainer.pretrain import views
from trainer.pretrain.config import PretrainConfig
from trainer.pretrain.encoder import VIEW_A, VIEW_B

CFG = recipe_config({"batch_size": 4, "verbose": 0})  # tiny sizes (2 s of 48 kHz), augmentation off


@pytest.mark.parametrize("num_samples,window,shift", [(10_000, 2_000, 300), (10_000, 2_000, 0), (2_500, 2_000, 5_000)])
def test_both_windows_lie_inside_the_audio_and_b_within_the_shift_of_a(num_samples, window, shift):
    starts = np.array([[int(v) for v in views.view_offsets(tf.constant(num_samples, tf.int64), window, shift,
                                                           tf.constant([7, i], tf.int64))] for i in range(200)])
    a, b = starts[:, 0], starts[:, 1]
    assert a.min() >= 0 and b.min() >= 0
    assert a.max() <= num_samples - window and b.max() <= num_samples - window
    assert np.abs(a - b).max() <= shift
    if shift == 0:
        np.testing.assert_array_equal(a, b)
    elif shift < num_samples - window:
        assert (a != b).mean() > 0.9  # the shift is drawn, not fixed
        assert len(set(a)) > 100  # A is drawn over the whole recording


def test_audio_shorter_than_the_window_starts_both_views_at_zero():
    a, b = views.view_offsets(tf.constant(500, tf.int64), 2_000, 300, tf.constant([1, 2], tf.int64))
    assert (int(a), int(b)) == (0, 0)


def _recording_ids(dataset, n):
    spec = {"recording_id": tf.io.FixedLenFeature([], tf.string),
            "kind": tf.io.FixedLenFeature([], tf.string, default_value="")}
    parsed = [tf.io.parse_single_example(r, spec) for r in dataset.take(n)]
    return [(p["recording_id"].numpy().decode(), p["kind"].numpy().decode()) for p in parsed]


def test_test_share_decides_whether_pairs_come_from_test_recordings_or_training_slices(tiny_shards, tiny_dataset):
    sources = views.find_sources(tiny_shards, CFG)
    manifest = discovery.read_manifest(tiny_shards)
    assert sources.num_train == sum(manifest.examples(k) for k in manifest.folds_with_shards())
    assert len(sources.test_files) == len(manifest.test) > 0
    test_ids = {p.split(".")[0] for p in __import__("os").listdir(f"{tiny_dataset}/test")}
    only_test = _recording_ids(views.source_records(sources, CFG, PretrainConfig(test_share=1.0)), 12)
    assert {r for r, _ in only_test} <= test_ids and all(kind == "" for _, kind in only_test)
    only_train = _recording_ids(views.source_records(sources, CFG, PretrainConfig(test_share=0.0)), 40)
    assert not {r for r, _ in only_train} & test_ids and all(kind for _, kind in only_train)
    mixed = _recording_ids(views.source_records(sources, CFG, PretrainConfig(test_share=0.5)), 200)
    share = np.mean([kind == "" for _, kind in mixed])
    assert 0.35 < share < 0.65


def test_without_shift_or_augmentation_the_two_views_are_the_same_window(tiny_shards):
    sources = views.find_sources(tiny_shards, CFG)
    batch, y = next(iter(views.pair_dataset(sources, CFG, PretrainConfig(batch_size=4, max_shift_seconds=0.0), 4, 1)))
    n_mels, frames, _ = discovery.input_shape(CFG)
    assert batch[VIEW_A].shape == (4, n_mels, frames, 1) and y.shape == (4,)
    np.testing.assert_array_equal(batch[VIEW_A].numpy(), batch[VIEW_B].numpy())
    assert np.std(batch[VIEW_A].numpy().reshape(4, -1).mean(axis=1)) > 0  # four different windows


def test_each_view_draws_its_own_augmentation(tiny_shards):
    cfg = recipe_config({"batch_size": 4, "verbose": 0},
                        {"augment": {"enabled": True, "noise_p": 1.0, "noise_min_snr_db": 0.0,
                                     "noise_max_snr_db": 5.0}})
    sources = views.find_sources(tiny_shards, cfg)
    batch, _ = next(iter(views.pair_dataset(sources, cfg, PretrainConfig(batch_size=4, max_shift_seconds=0.0), 4, 1)))
    a, b = batch[VIEW_A].numpy(), batch[VIEW_B].numpy()
    assert all(not np.allclose(a[i], b[i]) for i in range(4))
    # Same window under both noises: far closer to its partner than to the other windows.
    d = ((a[:, None] - b[None]) ** 2).mean(axis=(2, 3, 4))  # [4, 4]
    assert (np.argmin(d, axis=1) == np.arange(4)).all()


def test_shards_without_the_manifests_files_are_refused(tmp_path):
    (tmp_path / shards_layout.MANIFEST_FILE).write_text("{}")
    with pytest.raises(Exception, match="re-run `make shards`|lacks"):
        views.find_sources(str(tmp_path), CFG)
