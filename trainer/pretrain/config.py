"""The settings of a pretraining run that are not the fold's: schedule, loss and how the views are drawn.

What the encoder is (backbone, widths, input channels), its input (window, mel) and the augmentation of each
view come from the TrainConfig the folds will fine-tune with (same preset and flags), so the backbone's
weights fit the classifier they are copied into. Every field is a flag `--pretrain.<name>`.

    from trainer.pretrain.config import PretrainConfig
    pcfg = PretrainConfig(epochs=4, temperature=0.2)
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from core import settings
from core.settings import ConfigError


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Contrastive pretraining (SimCLR's NT-Xent over a batch of view pairs; trainer.pretrain.contrastive)."""

    LIMITS: ClassVar[settings.Limits] = {
        "epochs": (None, 10**6), "steps_per_epoch": (None, 10**7), "batch_size": (None, 65536),
        "learning_rate": (None, 10), "projection_units": (None, 65536), "embedding_dim": (None, 65536),
        "max_shift_seconds": (None, 3600)}

    epochs: int = 10
    steps_per_epoch: int = 60
    batch_size: int = 32  # view pairs per replica; the other pairs of the batch are each pair's negatives
    learning_rate: float = 1e-3  # Adam, cosine decay after a one-epoch warm-up
    temperature: float = 0.1  # of the cosine similarities in the softmax over the batch
    projection_units: int = 256  # the projection head's hidden Dense (dropped after pretraining)
    embedding_dim: int = 128
    # The second view's window starts up to this far from the first's (same source audio), so the pair shares
    # most of its content; the augmentation chain (background mixing above all) makes the rest differ.
    max_shift_seconds: float = 0.5
    # Share of the pairs drawn from the test recordings (the shards' whole test recordings, no labels read);
    # the rest from the training slices of every fold. 0 = training audio only.
    test_share: float = 0.4

    def __post_init__(self) -> None:
        settings.check_types(self, ConfigError)
        bad = [f"{k}={getattr(self, k)} (must be > 0)" for k in
               ("epochs", "steps_per_epoch", "batch_size", "learning_rate", "temperature", "projection_units",
                "embedding_dim") if not getattr(self, k) > 0]
        if self.batch_size < 2:
            bad.append(f"batch_size={self.batch_size} (a pair needs at least one other pair as its negative)")
        if self.max_shift_seconds < 0:
            bad.append(f"max_shift_seconds={self.max_shift_seconds} (must be >= 0)")
        if not 0.0 <= self.test_share <= 1.0:
            bad.append(f"test_share={self.test_share} (must be in [0, 1])")
        if bad:
            raise ConfigError("invalid pretraining config: " + "; ".join(bad))


@dataclasses.dataclass(frozen=True)
class PretrainFlags:
    """The flags' namespace: one section, so every flag reads --pretrain.<field>."""

    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
