"""trainer.augment.arrangement.BlockShuffle: blocks back in the drawn order, nothing lost, no clicks; its place
in the chain and its config."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.augment.arrangement import BlockShuffle
from trainer.augment.chain import AugmentConfig, augment_with_seed, build_augmentation
from trainer.augment.waveform import AugmentError, OneOf, TimeShift, VolumeControl

SR = 16000


def test_blocks_come_back_in_the_drawn_order() -> None:
    # Four tones of known frequency, 0.25 s each; cut exactly at their boundaries and reorder.
    tones = [np.sin(2 * np.pi * f * np.arange(SR // 4) / SR).astype(np.float32) for f in (300, 700, 1100, 1900)]
    y = np.concatenate(tones)
    out = BlockShuffle(blocks=4, fade_seconds=0.0, sample_rate=SR).apply(
        y, cuts=np.array([SR // 4, SR // 2, 3 * SR // 4]), order=np.array([3, 1, 0, 2]))
    np.testing.assert_array_equal(out, np.concatenate([tones[3], tones[1], tones[0], tones[2]]))
    # The dominant frequency of each quarter of the output says the same.
    peaks = [np.argmax(np.abs(np.fft.rfft(q))) * SR / len(q) for q in np.split(out, 4)]
    assert peaks == [1900, 700, 300, 1100]


def test_every_sample_is_kept_and_the_draw_is_seeded() -> None:
    y = np.random.default_rng(0).normal(size=SR).astype(np.float32)
    shuffle = BlockShuffle(blocks=5, fade_seconds=0.0, sample_rate=SR)
    out = shuffle(y, np.random.default_rng(3))
    assert out.dtype == np.float32 and out.shape == y.shape
    np.testing.assert_array_equal(np.sort(out), np.sort(y))  # a permutation of the window's samples
    assert not np.array_equal(out, y)
    np.testing.assert_array_equal(out, shuffle(y, np.random.default_rng(3)))
    params = shuffle.sample(np.random.default_rng(3), SR)
    assert sorted(params["order"]) == [0, 1, 2, 3, 4] and np.all(np.diff(params["cuts"]) >= 0)


def test_cut_edges_fade_instead_of_clicking() -> None:
    # A ramp from -1 to 1: moving its blocks around makes jumps of up to 2 at hard cuts.
    y = np.linspace(-1.0, 1.0, SR, dtype=np.float32)
    cuts, order = np.array([SR // 3, 2 * SR // 3]), np.array([2, 0, 1])
    hard = BlockShuffle(blocks=3, fade_seconds=0.0, sample_rate=SR).apply(y, cuts, order)
    soft = BlockShuffle(blocks=3, fade_seconds=0.01, sample_rate=SR).apply(y, cuts, order)
    assert np.abs(np.diff(hard)).max() > 1.0
    fade = int(0.01 * SR)
    assert np.abs(np.diff(soft)).max() < 4.0 / fade  # a raised cosine of 160 samples from |y| <= 1
    # Every seam fades (2|0: the window's end meets its start), the output's own ends do not.
    assert soft[0] == y[2 * SR // 3] and soft[-1] == y[2 * SR // 3 - 1]
    assert np.abs(soft[SR - 2 * SR // 3 - 1]) < 1e-3 and np.abs(soft[SR - 2 * SR // 3]) < 1e-3
    np.testing.assert_array_equal(soft[fade:SR // 3 - fade], hard[fade:SR // 3 - fade])  # the middles untouched
    # Blocks that stay neighbours (1 then 2) meet unfaded: the input's samples, as they were.
    kept = BlockShuffle(blocks=3, fade_seconds=0.01, sample_rate=SR).apply(y, cuts, np.array([1, 2, 0]))
    np.testing.assert_array_equal(kept[:SR - SR // 3 - fade], y[SR // 3:SR - fade])


def test_off_by_default_first_in_the_chain_when_on_and_checked() -> None:
    default = build_augmentation(AugmentConfig(), SR).chain.transforms
    assert not any(isinstance(t, BlockShuffle) for t in default)
    on = build_augmentation(AugmentConfig(block_shuffle_p=0.5, block_shuffle_blocks=3), SR).chain.transforms
    assert [type(t) for t in on] == [BlockShuffle, OneOf, TimeShift, VolumeControl] and on[1:] == default
    assert (on[0].p, on[0].blocks, on[0].sample_rate) == (0.5, 3, SR)
    y = np.random.default_rng(1).normal(size=SR // 2).astype(np.float32)
    augmentation = build_augmentation(AugmentConfig(block_shuffle_p=1.0, noise_p=0.0, time_shift_p=0.0,
                                                    volume_p=0.0), SR)
    out, _ = augment_with_seed(augmentation, y, 5)
    assert out.shape == y.shape and not np.array_equal(out, y)
    for bad in ({"block_shuffle_p": 1.5}, {"block_shuffle_blocks": 1}):
        with pytest.raises(AugmentError):
            AugmentConfig(**bad)
    with pytest.raises(AugmentError):
        BlockShuffle(blocks=1)
