"""Pseudo labels in the trainer: the sidecar's reader and lookup (trainer.data.soft_targets), how soft targets
combine with the box targets (trainer.data.targets.combine_soft), and the training stream reading them.

Expected values are written out by hand from the rules in the docstrings of targets.py and soft_targets.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.helpers.recipe_config import small_config
from tests.trainer.data.test_targets import (
    BOXES,
    MIN_OVERLAP,
    OFFSET,
    WINDOW,
    C,
    _boxes,
)
from trainer.data import discovery, inputs, soft_targets, targets


def test_combine_soft_on_known_inputs():
    labels = tf.constant([1.0, 0.0, 0.0, 0.0, 0.0])
    weights = tf.constant([1.0, 1.0, 0.1, 0.0, 0.1])  # tp, fp, unlabelled, grazing, unlabelled
    unlabelled = tf.constant([0.0, 0.0, 1.0, 0.0, 1.0])
    soft = tf.constant([0.2, 0.9, 0.7, 0.6, 0.05])
    out_labels, out_weights = targets.combine_soft(labels, weights, unlabelled, soft, tf.constant(1.0), 0.5)
    np.testing.assert_allclose(out_labels.numpy(), [1.0, 0.0, 0.7, 0.0, 0.05], atol=1e-7)
    np.testing.assert_allclose(out_weights.numpy(), [1.0, 1.0, 0.5, 0.0, 0.5], atol=1e-7)
    # a window the sidecar did not score keeps its box targets
    same_labels, same_weights = targets.combine_soft(labels, weights, unlabelled, soft, tf.constant(0.0), 0.5)
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
    np.testing.assert_array_equal(same_weights.numpy(), weights.numpy())


@pytest.mark.parametrize("found", [1.0, 0.0])
def test_window_targets_take_soft_labels_only_for_species_the_boxes_say_nothing_of(found):
    soft = tf.constant([0.11 * (c + 1) for c in range(C)])  # 0.11 .. 0.88
    labels, weights = targets.window_targets(_boxes(BOXES), tf.constant(OFFSET), WINDOW, C, MIN_OVERLAP, 0.3,
                                             soft=(soft, tf.constant(found)), soft_weight=0.7)
    # test_targets: species 0, 3, 4 positive; 2, 6 known negatives; 1, 7 grazing (weight 0); 5 unlabelled.
    s5, w5 = (0.66, 0.7) if found else (0.0, 0.3)
    np.testing.assert_allclose(labels.numpy(), [1.0, 0.0, 0.0, 1.0, 1.0, s5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.0, 1.0, 1.0, 1.0, w5, 1.0, 0.0], atol=1e-6)


def _sidecar(rows, num_classes=3, window=16000):
    """rows: (recording_id, window_start, [scores])."""
    return pd.DataFrame([{soft_targets.ID: r, soft_targets.FOLD: 0, soft_targets.START: s,
                          soft_targets.LENGTH: window, **{f"s{c}": v for c, v in enumerate(scores)}}
                         for r, s, scores in rows])


def test_lookup_takes_the_nearest_window_of_the_same_recording_within_half_a_window(tmp_path):
    path = soft_targets.write(_sidecar([("a", 16000, [0.2, 0.2, 0.2]), ("a", 0, [0.1, 0.1, 0.1]),
                                        ("a", 8000, [0.3, 0.4, 0.5]), ("b", 0, [0.9, 0.9, 0.9])]),
                              str(tmp_path / soft_targets.FILE))
    lookup = soft_targets.lookup_for(path, 3)

    def look(rec, start):
        scores, found = lookup(tf.constant(rec), tf.constant(start, tf.int64))
        return [round(float(v), 5) for v in scores.numpy()], float(found)

    assert look("a", 7000) == ([0.3, 0.4, 0.5], 1.0)
    assert look("a", 3000) == ([0.1, 0.1, 0.1], 1.0)
    assert look("a", 16000 + 8000) == ([0.2, 0.2, 0.2], 1.0)  # exactly half a window away
    assert look("a", 16000 + 8001) == ([0.0, 0.0, 0.0], 0.0)  # farther: not this window's
    assert look("b", 100) == ([0.9, 0.9, 0.9], 1.0)
    assert look("c", 0) == ([0.0, 0.0, 0.0], 0.0)  # a recording the sidecar does not know


def test_read_refuses_a_malformed_sidecar(tmp_path):
    with pytest.raises(soft_targets.SoftTargetsError, match="not found"):
        soft_targets.read(str(tmp_path / "none.csv"), 3)
    bad = _sidecar([("a", 0, [0.1, 1.5, 0.0])])
    with pytest.raises(soft_targets.SoftTargetsError, match=r"outside \[0, 1\]"):
        soft_targets.read(soft_targets.write(bad, str(tmp_path / "bad.csv")), 3)
    with pytest.raises(soft_targets.SoftTargetsError, match="lack columns"):
        soft_targets.read(soft_targets.write(_sidecar([("a", 0, [0.1, 0.1])], 2), str(tmp_path / "few.csv")), 3)


def test_the_training_stream_reads_the_sidecar_for_unlabelled_species_only(shards, tmp_path):
    """Every window of the training slices gets score 0.5 for species 5 and 0.25 for the rest; a tp slice of
    fold k keeps its hard positive TP_SPECIES + k, and its fp/background known negatives stay known."""
    plain = small_config(negative_fraction=0.0, unlabelled_weight=0.0)
    files = discovery.prepare_fold(shards, 0, plain).train_files_by_kind
    ids = [f"rec{k}_{i}" for k in (1, 2) for i in range(4)]
    rows = [(r, s, [0.5 if c == 5 else 0.25 for c in range(C_SHARDS)]) for r in ids for s in (0, 8000, 16000)]
    path = soft_targets.write(_sidecar(rows, C_SHARDS), str(tmp_path / soft_targets.FILE))
    soft = small_config(negative_fraction=0.0, unlabelled_weight=0.0, soft_targets=path, soft_target_weight=0.8)
    _, y0 = next(iter(inputs.train_dataset(files, plain, 8, 2)))
    _, y1 = next(iter(inputs.train_dataset(files, soft, 8, 2)))
    labels0, weights0 = y0.numpy()[:, :C_SHARDS], y0.numpy()[:, C_SHARDS:]
    labels1, weights1 = y1.numpy()[:, :C_SHARDS], y1.numpy()[:, C_SHARDS:]
    hard = weights0 > 0  # box-labelled species (unlabelled weight is 0): unchanged
    np.testing.assert_array_equal(labels1[hard], labels0[hard])
    np.testing.assert_array_equal(weights1[hard], weights0[hard])
    assert (labels0[hard] == 1).any()
    expected = np.where(np.arange(C_SHARDS) == 5, 0.5, 0.25)[None, :].repeat(len(labels1), 0)
    np.testing.assert_allclose(labels1[~hard], expected[~hard])
    np.testing.assert_allclose(weights1[~hard], 0.8)


C_SHARDS = 24
