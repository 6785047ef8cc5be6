"""Job flags of `pipeline.shards` as a frozen dataclass; everything else goes to Beam's PipelineOptions.

    cfg, beam_argv = parse_shards_args(["--data_dir", "d", "--output_dir", "o", "--runner", "DirectRunner"])
    # cfg: ShardsConfig(data_dir="d", ...), beam_argv: ["--runner", "DirectRunner"]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Sequence

from pipeline.errors import UserError

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class ShardsConfig:
    """Resolved settings of one sharding run (saved as OUT/config.json and in the manifest)."""

    data_dir: str
    output_dir: str
    num_folds: int = 5
    fold_seed: int = 27  # the seed notebook's StratifiedKFold random_state
    slice_seconds: float = 10.0  # the seed's SLICE_TIME_WINDOWS
    sample_rate: int = 48000
    num_classes: int = 24
    max_shard_mb: float = 200.0
    overwrite: bool = False

    def resolved(self) -> "ShardsConfig":
        """Local paths made absolute (workers may start elsewhere); gs:// and other URLs unchanged."""
        def absolute(path: str) -> str:
            return path if "://" in path else os.path.abspath(path)

        return dataclasses.replace(self, data_dir=absolute(self.data_dir), output_dir=absolute(self.output_dir))

    @property
    def slice_samples(self) -> int:
        return int(round(self.slice_seconds * self.sample_rate))

    def validate(self) -> None:
        """Raises UserError for values the job cannot run with."""
        if self.num_folds < 2:
            raise UserError(f"--num_folds must be at least 2, got {self.num_folds}")
        if not self.slice_seconds > 0:
            raise UserError(f"--slice_seconds must be positive, got {self.slice_seconds}")
        if self.sample_rate < 1000:
            raise UserError(f"--sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.num_classes < 1:
            raise UserError(f"--num_classes must be at least 1, got {self.num_classes}")
        if not self.max_shard_mb > 0:
            raise UserError(f"--max_shard_mb must be positive, got {self.max_shard_mb}")
        if self.data_dir.rstrip("/") == self.output_dir.rstrip("/"):
            raise UserError("--output_dir must differ from --data_dir")


class _UserErrorParser(argparse.ArgumentParser):
    """argparse that raises UserError (one line, exit 2 via run_main) instead of printing usage."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see `python -m pipeline.shards --help`)")


def build_parser() -> argparse.ArgumentParser:
    d = ShardsConfig("", "")
    p = _UserErrorParser(prog="python -m pipeline.shards", allow_abbrev=False,
                         description="RFCX recordings -> TFRecord shards (Apache Beam). Unknown flags go to Beam.")
    p.add_argument("--data_dir", required=True, help="RFCX-layout dataset dir (local or gs://)")
    p.add_argument("--output_dir", required=True, help="where shards go (local or gs://)")
    p.add_argument("--num_folds", type=int, default=d.num_folds)
    p.add_argument("--fold_seed", type=int, default=d.fold_seed)
    p.add_argument("--slice_seconds", type=float, default=d.slice_seconds)
    p.add_argument("--sample_rate", type=int, default=d.sample_rate, help="target rate; others are resampled")
    p.add_argument("--num_classes", type=int, default=d.num_classes)
    p.add_argument("--max_shard_mb", type=float, default=d.max_shard_mb, help="upper bound per shard file")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output dir of this job first")
    return p


def parse_shards_args(argv: Sequence[str] | None) -> tuple[ShardsConfig, list[str]]:
    """Splits argv into a validated, resolved ShardsConfig and the remaining (Beam) arguments."""
    known, rest = build_parser().parse_known_args(argv)
    cfg = ShardsConfig(**vars(known)).resolved()
    cfg.validate()
    return cfg, rest
