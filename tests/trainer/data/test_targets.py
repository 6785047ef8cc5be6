"""trainer.data.targets on hand-built boxes: what a window is known to hold, and mixup's combination.

Every expected value below is written out by hand from the rules in trainer/data/targets.py's docstring.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer.data import targets

C = 8
# The window [1.0, 3.0) s of a slice; min_overlap 0.5 of a box (of the window for a longer box).
OFFSET, WINDOW, MIN_OVERLAP = 1.0, 2.0, 0.5

# (species, t_min, t_max, is_tp): times in seconds from the slice start, all exact in float32.
BOXES = [
    (0, 1.5, 2.0, 1),    # 0: tp inside
    (0, 0.5, 1.125, 1),  # 0: and a tp that only grazes (0.125 of 0.625 s): still positive
    (1, 2.75, 3.75, 1),  # 1: tp grazing only (0.25 of 1 s inside): neither target is right -> weight 0
    (2, 1.25, 1.5, 0),   # 2: fp inside: known negative
    (3, 1.125, 1.25, 1),  # 3: tp inside ...
    (3, 2.0, 2.5, 0),    # 3: ... and fp inside: positive
    (5, 0.5, 1.0, 0),    # 5: fp ending where the window starts: not in the window -> unknown
    (6, 2.875, 3.5, 0),  # 6: fp touching the window's end (0.125 s inside): known negative
    (7, 0.0, 1.25, 1),   # 7: tp grazing (0.25 of 1.25 s) ...
    (7, 1.5, 2.5, 0),    # 7: ... and fp inside: the grazing call may be heard -> weight 0
    (8, 1.5, 2.0, 1),    # out of range (C = 8): ignored
    (-1, 1.5, 2.0, 1),   # out of range: ignored
    (4, 2.5, 3.5, 1),    # 4: tp with exactly min_overlap inside (0.5 of 1 s): positive (bound inclusive)
]


def _boxes(rows):
    species, t_min, t_max, is_tp = zip(*rows) if rows else ((), (), (), ())
    return {"species_id": tf.constant(species, tf.int64), "t_min": tf.constant(t_min, tf.float32),
            "t_max": tf.constant(t_max, tf.float32), "is_tp": tf.constant(is_tp, tf.int64)}


def _targets(rows, unlabelled_weight, offset=OFFSET, window=WINDOW, min_overlap=MIN_OVERLAP):
    labels, weights = targets.window_targets(_boxes(rows), tf.constant(offset), window, C, min_overlap,
                                             unlabelled_weight)
    return labels.numpy(), weights.numpy()


@pytest.mark.parametrize("unlabelled_weight", [0.0, 0.3, 1.0])
def test_window_targets_on_hand_built_boxes(unlabelled_weight):
    labels, weights = _targets(BOXES, unlabelled_weight)
    u = unlabelled_weight
    #                                  0    1    2    3    4    5    6    7
    np.testing.assert_array_equal(labels, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(weights, [1.0, 0.0, 1.0, 1.0, 1.0, u, 1.0, 0.0], rtol=0, atol=1e-7)


def test_box_longer_than_the_window_counts_by_the_windows_share():
    # A 5 s tp box over a 2 s window: all of the window is inside (>= 0.5 of the window) -> positive,
    # although only 40 % of the box is inside.
    labels, weights = _targets([(2, 0.0, 5.0, 1)], 0.0)
    assert labels[2] == 1.0 and weights[2] == 1.0
    # With min_overlap 1 the window must lie wholly inside the box: 2.5 .. 4.5 s reaches past the box end.
    labels, weights = _targets([(2, 0.0, 4.0, 1)], 0.0, offset=2.5, min_overlap=1.0)
    assert labels[2] == 0.0 and weights[2] == 0.0


def test_no_boxes_gives_no_positive_and_the_unlabelled_weight_everywhere():
    labels, weights = _targets([], 0.25)
    np.testing.assert_array_equal(labels, np.zeros(C))
    np.testing.assert_allclose(weights, np.full(C, 0.25))


def test_tp_and_fp_of_one_species_in_the_window_is_positive_whatever_the_order():
    for rows in ([(3, 1.5, 1.75, 1), (3, 1.5, 1.75, 0)], [(3, 1.5, 1.75, 0), (3, 1.5, 1.75, 1)]):
        labels, weights = _targets(rows, 0.0)
        assert labels[3] == 1.0 and weights[3] == 1.0


def test_pack_and_unpack_are_inverse():
    labels, weights = tf.constant([[1.0, 0.0, 0.0]]), tf.constant([[1.0, 0.5, 0.0]])
    y = targets.pack(labels, weights)
    np.testing.assert_array_equal(y.numpy(), [[1.0, 0.0, 0.0, 1.0, 0.5, 0.0]])
    back = targets.unpack(y, 3)
    np.testing.assert_array_equal(back[0].numpy(), labels.numpy())
    np.testing.assert_array_equal(back[1].numpy(), weights.numpy())


def test_mix_combines_labels_by_max_and_knows_a_negative_only_where_both_sides_do():
    # Per species (a, b) as (label, weight), and the expected mixture, from the docstring of mix:
    cases = [
        ((1, 1), (0, 0), (1, 1)),      # positive on one side, unknown on the other: positive, known
        ((0, 0), (1, 1), (1, 1)),      # the same the other way round
        ((1, 1), (1, 1), (1, 1)),      # positive on both
        ((0, 1), (0, 1), (0, 1)),      # known negative on both: known negative
        ((0, 1), (0, 0), (0, 0)),      # known negative on one side only: the other may hold it
        ((0, 1), (0, 0.3), (0, 0.3)),  # ... down-weighted unknown on the other: that weight
        ((0, 0), (0, 0), (0, 0)),      # unknown on both
        ((0, 0), (1, 1), (1, 1)),      # grazing (weight 0) on one side, positive on the other
    ]
    n = len(cases)
    y_a = np.array([[c[0][0] for c in cases] + [c[0][1] for c in cases]], np.float32)
    y_b = np.array([[c[1][0] for c in cases] + [c[1][1] for c in cases]], np.float32)
    expected = np.array([[c[2][0] for c in cases] + [c[2][1] for c in cases]], np.float32)
    np.testing.assert_allclose(targets.mix(tf.constant(y_a), tf.constant(y_b), n).numpy(), expected, atol=1e-7)
    # Symmetric in its two arguments.
    np.testing.assert_allclose(targets.mix(tf.constant(y_b), tf.constant(y_a), n).numpy(), expected, atol=1e-7)
