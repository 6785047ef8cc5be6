"""A waveform transform (numpy) that rearranges a window in time: `BlockShuffle`.

Same contract as trainer.augment.waveform: ``(y: float32 [n], rng) -> float32 [n]``, every draw from
`rng`, `sample` draws and `apply` is the deterministic effect; off in AugmentConfig's defaults
(`block_shuffle_p` 0); trainer.augment.chain places it first in the chain.

Why: the call variants of one species differ in how many syllables they hold, in what order and at what
rhythm, while the syllables themselves and the band stay (benchmarks/realistic_data.py builds its unseen
test variants that way, as birds and frogs vary their songs). A model that keys on a variant's whole
arrangement misses a new one. Cutting the window into a few blocks at random points and putting them
back in a random order keeps every sound of the window (so the labels hold) and breaks the arrangement.

    from trainer.augment.arrangement import BlockShuffle
    y_shuffled = BlockShuffle(blocks=4, sample_rate=48000)(y, np.random.default_rng(1))

Where two blocks meet that were not neighbours in the input, each fades over `fade_seconds` (a raised
cosine), so a seam adds no click: a step there would be a broadband transient in the log-mel, a sound no
recording holds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from trainer.augment.waveform import AugmentError, RandomTransform


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockShuffle(RandomTransform):
    """Cuts the window at `blocks` - 1 uniform random points and concatenates the blocks in a random order.

    Parameters:
      blocks: number of blocks (>= 2).
      fade_seconds: length of the raised-cosine fade at each cut edge (0: hard cuts); shortened to half
        a block where a block is shorter.
      sample_rate: Hz.
    """

    blocks: int = 4
    fade_seconds: float = 0.005
    sample_rate: int = 48000
    _NONNEGATIVE: ClassVar[tuple[str, ...]] = ("fade_seconds",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.blocks < 2:
            raise AugmentError(f"BlockShuffle.blocks must be >= 2, got {self.blocks}")

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        cuts = np.sort(rng.integers(1, max(n, 2), size=self.blocks - 1))  # block k: [bounds[k], bounds[k+1])
        return {"cuts": cuts, "order": rng.permutation(self.blocks)}

    def apply(self, y: np.ndarray, cuts: np.ndarray, order: np.ndarray) -> np.ndarray:
        bounds = np.concatenate([[0], np.clip(cuts, 0, y.shape[0]), [y.shape[0]]]).astype(np.int64)
        fade = int(round(self.fade_seconds * self.sample_rate))
        order = [int(k) for k in order]
        pieces = []
        for i, k in enumerate(order):
            block = y[bounds[k]:bounds[k + 1]].astype(np.float32, copy=True)
            f = min(fade, block.shape[0] // 2)
            if f > 0:
                ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(f) + 0.5) / f)).astype(np.float32)  # 0 -> 1
                # A seam needs the fades unless the blocks on both sides were neighbours in the input
                # (the output's own start and end are no seams).
                if i > 0 and order[i - 1] != k - 1:
                    block[:f] *= ramp
                if i < len(order) - 1 and order[i + 1] != k + 1:
                    block[-f:] *= ramp[::-1]
            pieces.append(block)
        return np.concatenate(pieces) if pieces else y.astype(np.float32, copy=True)
