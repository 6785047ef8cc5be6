"""trainer.augment.spec: SpecAugment masks per example and mixup per batch, as TF ops.

Masks: every changed value lies in a whole masked band or frame, the stripes stay within their
configured widths (both ends reached over many seeds) and hold the example's mean. Mixup: a mixed
example is lam * x_i + (1 - lam) * x_j for its drawn partner j (recovered from one-hot inputs),
and its targets are that pair's combination written out by hand (labels max; a negative known only
where both sides know it).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from trainer.augment import spec
from trainer.augment.chain import AugmentConfig
from trainer.data import targets

N_MELS, FRAMES = 32, 50


def _cfg(**kw) -> AugmentConfig:
    base = dict(enabled=True, noise_p=0.0, pitch_shift_p=0.0, time_shift_p=0.0, volume_p=0.0, time_masks=0,
                freq_masks=0, time_mask_fraction=0.1, freq_mask_fraction=0.1, mixup_p=0.0, mixup_alpha=0.4)
    return AugmentConfig(**{**base, **kw})


def _example(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N_MELS, FRAMES, 1)).astype(np.float32)


def _runs(mask_1d: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a bool vector."""
    padded = np.concatenate([[False], mask_1d, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(edges[1::2] - edges[::2])


def _masked_bands_and_frames(x: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    changed = out[..., 0] != x[..., 0]
    mean = x.mean()
    filled = np.isclose(out[..., 0], mean, rtol=0, atol=1e-6)
    bands = filled.all(axis=1)  # [n_mels]: a whole band at the mean
    frames = filled.all(axis=0)  # [frames]
    # Every changed value belongs to a whole masked band or frame, and holds the mean.
    assert (changed <= (bands[:, None] | frames[None, :])).all()
    assert np.allclose(out[..., 0][changed], mean, atol=1e-6)
    # Outside the stripes nothing changed.
    np.testing.assert_array_equal(out[~bands][:, ~frames], x[~bands][:, ~frames])
    return bands, frames


def test_one_stripe_per_axis_stays_within_its_width_and_reaches_both_ends():
    cfg = _cfg(time_masks=1, time_mask_fraction=0.2, freq_masks=1, freq_mask_fraction=0.25)
    max_frames, max_bands = int(0.2 * FRAMES), int(0.25 * N_MELS)  # 10, 8
    band_widths, frame_widths = [], []
    for seed in range(150):
        x = _example(seed)
        out = spec.mask(tf.constant(x), cfg, tf.constant([seed, 1], tf.int64)).numpy()
        bands, frames = _masked_bands_and_frames(x, out)
        band_runs, frame_runs = _runs(bands), _runs(frames)
        assert len(band_runs) <= 1 and len(frame_runs) <= 1
        band_widths.append(sum(band_runs))
        frame_widths.append(sum(frame_runs))
    assert max(band_widths) == max_bands and max(frame_widths) == max_frames
    assert min(band_widths) == 0 and min(frame_widths) == 0
    assert len(set(frame_widths)) == max_frames + 1  # every width 0..max is drawn


def test_several_stripes_and_seeds():
    cfg = _cfg(time_masks=3, time_mask_fraction=0.1, freq_masks=2, freq_mask_fraction=0.1)
    x = _example(7)
    outs = []
    for seed in range(30):
        out = spec.mask(tf.constant(x), cfg, tf.constant([seed, 2], tf.int64)).numpy()
        bands, frames = _masked_bands_and_frames(x, out)
        assert bands.sum() <= 2 * int(0.1 * N_MELS) and frames.sum() <= 3 * int(0.1 * FRAMES)
        assert len(_runs(bands)) <= 2 and len(_runs(frames)) <= 3
        outs.append(out)
    again = spec.mask(tf.constant(x), cfg, tf.constant([0, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(again, outs[0])  # same seed, same masks
    assert not all(np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("cfg", [_cfg(), _cfg(enabled=False, time_masks=2, freq_masks=2)],
                         ids=["no_masks", "augment_disabled"])
def test_masks_off(cfg):
    x = _example(3)
    assert not spec.masking_enabled(cfg)
    np.testing.assert_array_equal(spec.mask(tf.constant(x), cfg, tf.constant([0, 0], tf.int64)).numpy(), x)


C = 5
_MIX = functools.partial(targets.mix, num_classes=C)  # what the trainer passes as mix_targets


def _expected_mix(y_i: np.ndarray, y_j: np.ndarray) -> np.ndarray:
    """trainer.data.targets.mix's documented rule, per species, by hand."""
    out = np.zeros_like(y_i)
    for c in range(C):
        (li, wi), (lj, wj) = (y_i[c], y_i[C + c]), (y_j[c], y_j[C + c])
        if li == 1 or lj == 1:
            out[c], out[C + c] = 1.0, 1.0  # positive (window positives are always known)
        else:
            out[c], out[C + c] = 0.0, min(wi, wj)
    return out


def _batch(batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x[i] one-hot at position i of a [batch, 2, batch, 1] block (so a mixture reveals its pair); y random."""
    x = np.zeros((batch, 2, batch, 1), np.float32)
    x[np.arange(batch), 0, np.arange(batch), 0] = 1.0
    rng = np.random.default_rng(seed)
    labels = (rng.random((batch, C)) < 0.3).astype(np.float32)
    weights = np.where(labels == 1, 1.0, rng.choice([0.0, 0.5, 1.0], size=(batch, C))).astype(np.float32)
    return x, np.concatenate([labels, weights], axis=1)


def test_mixup_mixes_each_chosen_example_with_its_partner_and_combines_targets():
    batch = 8
    x, y = _batch(batch, seed=0)
    identified = 0
    for seed in range(5):
        mixed_x, mixed_y = spec.mixup(tf.constant(x), tf.constant(y), _cfg(mixup_p=1.0), _MIX,
                                              tf.constant([seed, 9], tf.int64))
        mixed_x, mixed_y = mixed_x.numpy(), mixed_y.numpy()
        for i in range(batch):
            row = mixed_x[i, 0, :, 0]
            assert (mixed_x[i, 1] == 0).all() and row.sum() == pytest.approx(1.0, abs=1e-6)
            lam = row[i]
            others = np.flatnonzero(np.delete(row, i) > 0)
            if lam == 1.0:
                continue  # lam drawn at 1 (Beta(0.4, 0.4) can): the partner is invisible
            assert len(others) == 1  # one partner, never the example itself
            j = int(np.delete(np.arange(batch), i)[others[0]])
            np.testing.assert_allclose(row, lam * x[i, 0, :, 0] + (1 - lam) * x[j, 0, :, 0], atol=1e-6)
            np.testing.assert_array_equal(mixed_y[i], _expected_mix(y[i], y[j]))
            identified += 1
    assert identified >= 4 * batch


def test_mixup_share_of_mixed_examples_follows_mixup_p():
    batch, p = 400, 0.3
    x, y = _batch(batch, seed=1)
    mixed_x, mixed_y = spec.mixup(tf.constant(x), tf.constant(y), _cfg(mixup_p=p), _MIX,
                                          tf.constant([1, 2], tf.int64))
    mixed_x, mixed_y = mixed_x.numpy(), mixed_y.numpy()
    untouched = np.array([np.array_equal(mixed_x[i], x[i]) for i in range(batch)])
    # Binomial(400, 0.3): sd 9.2 examples; 5 sd either side (lam drawn at exactly 1 looks untouched: rare).
    assert abs((~untouched).sum() - p * batch) <= 5 * np.sqrt(batch * p * (1 - p))
    np.testing.assert_array_equal(mixed_y[untouched], y[untouched])


@pytest.mark.parametrize("cfg, batch", [(_cfg(mixup_p=0.0), 4), (_cfg(enabled=False, mixup_p=1.0), 4),
                                        (_cfg(mixup_p=1.0), 1)], ids=["p0", "augment_disabled", "batch_of_one"])
def test_mixup_off(cfg, batch):
    x, y = _batch(batch, seed=2)
    mixed_x, mixed_y = spec.mixup(tf.constant(x), tf.constant(y), cfg, _MIX, tf.constant([0, 0], tf.int64))
    np.testing.assert_array_equal(mixed_x.numpy(), x)
    np.testing.assert_array_equal(mixed_y.numpy(), y)
