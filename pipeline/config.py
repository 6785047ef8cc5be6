"""Job flags of `pipeline.shards` as a frozen dataclass; everything else goes to Beam's PipelineOptions.

    cfg, beam_argv = parse_shards_args(["--data_dir", "d", "--output_dir", "o", "--runner", "DirectRunner"])
    # cfg: ShardsConfig(data_dir="d", ...), beam_argv: ["--runner", "DirectRunner"]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Sequence

from pipeline import checks
from pipeline.errors import UserError

MB = 1 << 20
# Serialized bytes of a train example beyond its audio (ids, boxes, labels): a generous bound.
EXAMPLE_OVERHEAD_BYTES = 4096
# RFCX test recordings last 60 s; a longer one can take its test shard past --max_shard_mb by the excess.
TEST_RECORDING_SECONDS = 60.0
# Bounds that keep one example (labels are num_classes floats) and one decode within a worker's memory.
MAX_NUM_CLASSES = 65536
MAX_SAMPLE_RATE = 768000


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
    # A longer recording is a dead letter `too_long` instead of a worker's memory: 600 s of 96 kHz
    # float64 audio is ~460 MB while it is decoded (RFCX recordings last 60 s).
    max_recording_seconds: float = 600.0
    allow_test_in_train: bool = False  # a recording both in test/ (or sample_submission) and the CSVs
    # Slices per training recording overlapping no tp box (negatives; schema KIND_BACKGROUND).
    background_per_recording: int = 2
    overwrite: bool = False
    # Seconds between the workers' progress lines (pipeline.progress); 0: none.
    progress_seconds: float = 30.0

    def resolved(self) -> "ShardsConfig":
        """Local paths made absolute (workers may start elsewhere); gs:// and other URLs unchanged."""
        def absolute(path: str) -> str:
            return path if "://" in path else os.path.abspath(path)

        return dataclasses.replace(self, data_dir=absolute(self.data_dir), output_dir=absolute(self.output_dir))

    @property
    def slice_samples(self) -> int:
        return int(round(self.slice_seconds * self.sample_rate))

    def _shard_fill_limit(self, example_audio_bytes: int) -> int:
        # The sink closes a file after the write that reaches its limit: leave room for one more
        # example, so that shards stay within max_shard_mb.
        return int(self.max_shard_mb * MB) - EXAMPLE_OVERHEAD_BYTES - example_audio_bytes

    @property
    def max_train_fill_bytes(self) -> int:
        """Bytes after which a train shard is closed (see _shard_fill_limit)."""
        return self._shard_fill_limit(self.slice_samples * 2)

    @property
    def max_test_fill_bytes(self) -> int:
        """Bytes after which a test shard is closed (recordings up to TEST_RECORDING_SECONDS).

        At least 1: a whole test recording is one example and cannot be split, so one larger than
        --max_shard_mb gets a file of its own (the README says so).
        """
        return max(1, self._shard_fill_limit(int(TEST_RECORDING_SECONDS * self.sample_rate) * 2))

    def validate(self) -> None:
        """Raises UserError for values the job cannot run with."""
        checks.number("--fold_seed", self.fold_seed, 0, 2**32 - 1)  # scikit-learn's random_state range
        checks.number("--slice_seconds", self.slice_seconds, 0, low_open=True)
        checks.number("--sample_rate", self.sample_rate, high=MAX_SAMPLE_RATE)
        checks.number("--num_classes", self.num_classes, high=MAX_NUM_CLASSES)
        checks.number("--max_shard_mb", self.max_shard_mb, 0, low_open=True)
        checks.number("--max_recording_seconds", self.max_recording_seconds, 0, low_open=True)
        checks.number("--background_per_recording", self.background_per_recording, high=1000)  # slices held at once
        checks.number("--progress_seconds", self.progress_seconds, 0)
        if self.num_folds < 2:
            raise UserError(f"--num_folds must be at least 2, got {self.num_folds}")
        if not self.slice_seconds > 0 or self.slice_samples < 1:
            raise UserError(f"--slice_seconds must give at least one sample, got {self.slice_seconds}")
        if self.sample_rate < 1000:
            raise UserError(f"--sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.background_per_recording < 0:
            raise UserError(f"--background_per_recording must be 0 or more, got {self.background_per_recording}")
        if self.num_classes < 1:
            raise UserError(f"--num_classes must be at least 1, got {self.num_classes}")
        if self.max_train_fill_bytes <= 0:
            need = (EXAMPLE_OVERHEAD_BYTES + 2 * self.slice_samples) / MB
            raise UserError(f"--max_shard_mb {self.max_shard_mb} cannot hold one train example; it must exceed "
                            f"{need:.2f} (a {self.slice_seconds:g} s slice at {self.sample_rate} Hz)")
        if self.data_dir.rstrip("/") == self.output_dir.rstrip("/"):
            raise UserError("--output_dir must differ from --data_dir")


def build_parser() -> argparse.ArgumentParser:
    d = ShardsConfig("", "")
    p = checks.ArgumentParser(prog="python -m pipeline.shards", allow_abbrev=False,
                         description="RFCX recordings -> TFRecord shards (Apache Beam). Unknown flags go to Beam.")
    p.add_argument("--data_dir", required=True, help="RFCX-layout dataset dir (local or gs://)")
    p.add_argument("--output_dir", required=True, help="where shards go (local or gs://)")
    p.add_argument("--num_folds", type=int, default=d.num_folds)
    p.add_argument("--fold_seed", type=int, default=d.fold_seed)
    p.add_argument("--slice_seconds", type=float, default=d.slice_seconds)
    p.add_argument("--sample_rate", type=int, default=d.sample_rate, help="target rate; others are resampled")
    p.add_argument("--num_classes", type=int, default=d.num_classes)
    p.add_argument("--max_shard_mb", type=float, default=d.max_shard_mb, help="upper bound per shard file")
    p.add_argument("--max_recording_seconds", type=float, default=d.max_recording_seconds,
                   help="a longer recording becomes a dead letter `too_long` (bounds a worker's memory)")
    p.add_argument("--allow_test_in_train", action="store_true",
                   help="let recordings of the test set (test/, sample_submission.csv) be trained on; warned")
    p.add_argument("--background_per_recording", type=int, default=d.background_per_recording,
                   help="slices per training recording that overlap no tp box (drawn from --fold_seed and the id)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output dir of this job first")
    p.add_argument("--progress_seconds", type=float, default=d.progress_seconds,
                   help="log recordings done / total, rate and ETA this often (0: off); with several worker "
                        "processes each reports its own share")
    return p


def parse_shards_args(argv: Sequence[str] | None) -> tuple[ShardsConfig, list[str]]:
    """Splits argv into a validated, resolved ShardsConfig and the remaining (Beam) arguments."""
    known, rest = build_parser().parse_known_args(argv)
    cfg = ShardsConfig(**vars(known)).resolved()
    cfg.validate()
    return cfg, rest
