"""What a training window is known to hold: per-species targets and loss weights from the slice's boxes.

RFCX labels are partial: a tp box says a species calls there, an fp box that a look-alike of a species
is there and the species is not, and nothing at all is said about the other species (a recording's
other calls are mostly unlabelled). So every window carries two [C] vectors, packed side by side
into the Keras target `y` [..., 2C] (`pack` / `unpack`):

* `labels[c]`: 1 when a tp box of species c overlaps the window by at least `min_overlap` of the box
  (or of the window, for a box longer than it), else 0;
* `weights[c]`: how much the loss counts c: 1 where the label is known (a tp or fp box of c in the
  window), `unlabelled_weight` where nothing is known (0 = masked, as the RFCX winners trained on
  partial labels; 1 = absence means negative, right for exhaustively labelled data), and 0 for a
  species whose tp box only grazes the window (less than `min_overlap` inside: the call may or may
  not be heard, so neither target is right).

A species with a tp and an fp box in the window is positive. The pieces are TensorFlow ops on one
example (they run inside tf.data's map); `mix` combines two examples for mixup.

Pseudo labels (trainer.data.soft_targets, given with TrainConfig.soft_targets): for a training window the
sidecar scored, every *unlabelled* species (no tp or fp box touches the window) takes the out-of-fold
model's score as its label and `soft_weight` as its weight (`combine_soft`); box-labelled species keep
their hard labels and weight 1, grazing ones weight 0. A window the sidecar did not score keeps
`unlabelled_weight`. (mixup's `mix` counts a soft label above 0.5 as a positive.)

    labels, weights = window_targets(boxes, offset_s, window_s, num_classes, min_overlap=0.5,
                                     unlabelled_weight=0.0)   # [C], [C]
    labels, weights = window_targets(..., soft=(scores, found), soft_weight=1.0)   # with pseudo labels
    y = pack(labels, weights)                                 # [2C]
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

# Slack on "at least min_overlap inside", in seconds: the training crop (trainer.data.inputs.crop_offset)
# guarantees the share in whole samples, but here it is recomputed from float32 seconds, which can
# fall short of it by a few ulps at the bounds of the crop's range (e.g. a window inside a longer
# box with min_overlap 1). 1e-5 s is under half a sample at 48 kHz, so no real overlap changes side.
_OVERLAP_SLACK_S = 1e-5


def pack(labels: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """[..., C], [..., C] -> y [..., 2C] (labels first)."""
    return tf.concat([labels, weights], axis=-1)


def unpack(y: tf.Tensor, num_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """y [..., 2C] -> (labels [..., C], weights [..., C])."""
    return y[..., :num_classes], y[..., num_classes:]


def combine_soft(labels: tf.Tensor, weights: tf.Tensor, unlabelled: tf.Tensor, soft: tf.Tensor, found: tf.Tensor,
                 soft_weight: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Box targets with pseudo labels: (labels [C], weights [C]).

    labels, weights [C]: the box targets; unlabelled [C]: 1 where no box says anything of the species;
    soft [C]: the sidecar's scores; found []: 1 when the sidecar scored the window, else 0 (then
    nothing changes). Where unlabelled and found: label = soft, weight = soft_weight.
    """
    use = unlabelled * found  # [C] 1 where the pseudo label replaces the box target
    return labels * (1.0 - use) + soft * use, weights * (1.0 - use) + soft_weight * use


def window_targets(boxes: Mapping[str, tf.Tensor], offset_s: tf.Tensor, window_s: float, num_classes: int,
                   min_overlap: float, unlabelled_weight: float,
                   soft: tuple[tf.Tensor, tf.Tensor] | None = None,
                   soft_weight: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Targets of the window [offset_s, offset_s + window_s) of a slice (seconds from the slice start).

    boxes: dense "species_id" int64 [n], "t_min"/"t_max" float32 [n] (seconds from the slice start),
    "is_tp" int64 [n]. Returns (labels [C], weights [C]) as described in the module docstring; with
    `soft` = (scores [C], found []) the unlabelled species take the pseudo labels (combine_soft).
    """
    start = tf.cast(offset_s, tf.float32)
    end = start + window_s
    t_min, t_max = tf.cast(boxes["t_min"], tf.float32), tf.cast(boxes["t_max"], tf.float32)
    inside = tf.maximum(tf.minimum(t_max, end) - tf.maximum(t_min, start), 0.0)  # [n] seconds
    needed = min_overlap * tf.minimum(tf.maximum(t_max - t_min, 0.0), window_s)  # [n]
    touches = inside > 0.0
    enough = touches & (inside >= needed - _OVERLAP_SLACK_S)
    species = tf.cast(boxes["species_id"], tf.int32)
    valid = (species >= 0) & (species < num_classes)
    is_tp = tf.cast(boxes["is_tp"], tf.bool)

    def per_species(mask: tf.Tensor) -> tf.Tensor:  # [n] bool -> [C] float32: any box of c where mask
        hits = tf.boolean_mask(species, mask & valid)
        counts = tf.math.bincount(hits, minlength=num_classes, maxlength=num_classes, dtype=tf.float32)
        # bincount's shape is dynamic; a static [C] keeps y [B, 2C] static, so Keras traces one train step.
        return tf.ensure_shape(tf.minimum(counts, 1.0), [num_classes])

    positive = per_species(is_tp & enough)
    grazing = per_species(is_tp & touches & ~enough) * (1.0 - positive)  # a tp call cut at the edge
    known_negative = per_species(~is_tp & touches) * (1.0 - positive) * (1.0 - grazing)
    known = tf.maximum(positive, known_negative)
    unlabelled = (1.0 - known) * (1.0 - grazing)
    weights = known + unlabelled * unlabelled_weight
    if soft is not None:
        return combine_soft(positive, weights, unlabelled, soft[0], soft[1], soft_weight)
    return positive, weights


def mix(y_a: tf.Tensor, y_b: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Targets of a mixup of two examples: y [..., 2C] each -> y [..., 2C].

    A species is positive when it is positive in either (labels: max). Its weight: a positive from
    either side is known (weight 1); otherwise the mixture is a known negative only as far as both
    sides are (weights: min), since an unknown side may hold the species.
    """
    labels_a, weights_a = unpack(y_a, num_classes)
    labels_b, weights_b = unpack(y_b, num_classes)
    labels = tf.maximum(labels_a, labels_b)
    positive_weight = tf.maximum(labels_a * weights_a, labels_b * weights_b)
    weights = tf.where(labels > 0.5, positive_weight, tf.minimum(weights_a, weights_b))
    return pack(labels, weights)
