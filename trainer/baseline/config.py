"""The baseline's settings: a frozen dataclass whose fields are its flags (core.settings), nesting the
trainer's MelConfig for its log-mel front end instead of copying its fields.

    cfg = BaselineConfig(unlabelled_weight=0.0, mel=MelConfig(scaling="db", n_mels=64))
    cfg.mel_config(sample_rate=48000), cfg.window_samples(48000), cfg.stride_samples(48000)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from core import choices, settings
from core.errors import UserError
from core.windows import default_stride, seconds_to_samples
from trainer.features import mel as mel_lib


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


class BaselineConfigError(UserError):
    """A baseline setting out of range."""


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Settings of the baseline (every one a flag of `python -m trainer.baseline.run`).

    The log-mel is the trainer's own MelConfig section (`--mel.n_mels 64` ...), "db" scaling; its
    sample_rate is always the shards' (mel_config).
    """

    window_seconds: float = _field(5.0, "window per training slice and per test step")
    stride_seconds: float | None = _field(None, "test window step (None: half a window)")
    unlabelled_weight: float = _field(1.0, "weight of a slice for a species not known there "
                                           "(0 = masked, 1 = absent means negative)")
    c: float = _field(1.0, "LogisticRegression's C (inverse L2 strength)")
    max_iter: int = _field(1000, "LogisticRegression's lbfgs iterations")
    batch_size: int = _field(32, "windows per log-mel call")
    submission: Literal["auto", "yes", "no"] = _field(
        "auto", "score the test recordings: auto = when the shards hold some, yes = required, no = never")
    mel: mel_lib.MelConfig = dataclasses.field(default_factory=lambda: mel_lib.MelConfig(scaling="db"))

    def __post_init__(self) -> None:
        settings.check_types(self, BaselineConfigError)
        choices.check(self, BaselineConfigError)
        # The features are the trainer's "db" log-mel at the shards' own rate (mel_config): neither is a setting.
        if self.mel.scaling != "db":
            raise BaselineConfigError(f"--mel.scaling must be db for the baseline's band statistics, got "
                                      f"{self.mel.scaling!r}")
        if self.mel.device != mel_lib.MelConfig.device:  # a training placement; the baseline trains no network
            raise BaselineConfigError("--mel.device is not a baseline setting: it places the trainer's log-mel")
        if self.mel.sample_rate != mel_lib.MelConfig.sample_rate:
            raise BaselineConfigError("--mel.sample_rate is not a baseline setting: the log-mel runs at the shards' "
                                      "sample rate")
        def positive_finite(name: str, value: Any) -> None:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BaselineConfigError(f"--{name} must be a finite number > 0, got {value!r}")

        positive_finite("window_seconds", self.window_seconds)
        if self.stride_seconds is not None:
            positive_finite("stride_seconds", self.stride_seconds)
            if self.stride_seconds > self.window_seconds:
                raise BaselineConfigError(f"--stride_seconds {self.stride_seconds} must not exceed --window_seconds "
                                          f"{self.window_seconds} (windows would skip audio)")
        w = self.unlabelled_weight
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise BaselineConfigError(f"--unlabelled_weight must be a finite number >= 0, got {w!r}")
        positive_finite("c", self.c)
        for name in ("max_iter", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BaselineConfigError(f"--{name} must be an integer >= 1, got {value!r}")
        # Absurd sizes would exhaust memory or overflow inside TensorFlow instead of failing here.
        for name, high in (("window_seconds", 3600), ("stride_seconds", 3600), ("batch_size", 65536),
                           ("max_iter", 10**7)):
            if getattr(self, name) is not None and getattr(self, name) > high:
                raise BaselineConfigError(f"--{name} must be <= {high}, got {getattr(self, name)!r}")

    def mel_config(self, sample_rate: int) -> mel_lib.MelConfig:
        """The log-mel of the features at the shards' rate; fmax is lowered to Nyquist for rates below 2 x fmax."""
        try:
            return dataclasses.replace(self.mel, sample_rate=sample_rate, fmax=min(self.mel.fmax, sample_rate / 2))
        except mel_lib.MelConfigError as e:
            raise BaselineConfigError(f"log-mel settings do not fit shards at {sample_rate} Hz: {e}") from e

    def window_samples(self, sample_rate: int) -> int:
        window = seconds_to_samples(self.window_seconds, sample_rate)
        if window < 1:
            raise BaselineConfigError(f"--window_seconds {self.window_seconds} is less than one sample at "
                                      f"{sample_rate} Hz")
        return window

    def stride_samples(self, sample_rate: int) -> int:
        if self.stride_seconds is None:
            return default_stride(self.window_samples(sample_rate))
        return max(1, seconds_to_samples(self.stride_seconds, sample_rate))
