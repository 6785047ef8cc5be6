"""Job flags of `pipeline.shards` as a frozen dataclass (flags generated from its fields by core.settings);
everything else goes to Beam's PipelineOptions.

    cfg, beam_argv = parse_shards_args(["--data_dir", "d", "--output_dir", "o", "--runner", "DirectRunner"])
    # cfg: ShardsConfig(data_dir="d", ...), beam_argv: ["--runner", "DirectRunner"]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Sequence

from core import checks, fs, settings
from core.errors import UserError

MB = 1 << 20
# Serialized bytes of a train example beyond its audio (ids, boxes, labels): a generous bound.
EXAMPLE_OVERHEAD_BYTES = 4096
# RFCX test recordings last 60 s; a longer one can take its test shard past --max_shard_mb by the excess.
TEST_RECORDING_SECONDS = 60.0
# Bounds that keep one example (labels are num_classes floats) and one decode within a worker's memory.
MAX_NUM_CLASSES = 65536
MAX_SAMPLE_RATE = 768000


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ShardsConfig:
    """Resolved settings of one sharding run (saved as OUT/config.json and in the manifest)."""

    data_dir: str = dataclasses.field(metadata={"help": "RFCX-layout dataset dir (local or gs://)"})
    output_dir: str = dataclasses.field(metadata={"help": "where shards go (local or gs://)"})
    num_folds: int = 5
    fold_seed: int = _field(27, "the seed notebook's StratifiedKFold random_state")
    slice_seconds: float = _field(10.0, "slice length around each box (the seed's SLICE_TIME_WINDOWS)")
    sample_rate: int = _field(48000, "target rate; others are resampled")
    num_classes: int = 24
    max_shard_mb: float = _field(200.0, "upper bound per shard file")
    # 600 s of 96 kHz float64 audio is ~460 MB while it is decoded (RFCX recordings last 60 s).
    max_recording_seconds: float = _field(600.0, "a longer recording becomes a dead letter `too_long` "
                                                 "(bounds a worker's memory)")
    allow_test_in_train: bool = _field(False, "let recordings of the test set (test/, sample_submission.csv) "
                                              "be trained on; warned")
    background_per_recording: int = _field(2, "slices per training recording that overlap no tp box (drawn "
                                              "from --fold_seed and the id)")
    overwrite: bool = _field(False, "delete an existing output dir of this job first")
    progress_seconds: float = _field(30.0, "log recordings done / total, rate and ETA this often (0: off); "
                                           "with several worker processes each reports its own share")

    def __post_init__(self) -> None:
        settings.check_types(self, UserError)

    def resolved(self) -> "ShardsConfig":
        """Local paths made absolute (workers may start elsewhere); gs:// and other URLs unchanged."""
        def absolute(path: str) -> str:
            return path if fs.is_remote(path) else os.path.abspath(path)

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
    p = checks.ArgumentParser(prog="python -m pipeline.shards", allow_abbrev=False,
                              description="RFCX recordings -> TFRecord shards (Apache Beam). Unknown flags go to Beam.")
    settings.add_flags(p, ShardsConfig, "job settings (saved as OUTPUT_DIR/config.json)")
    return p


def parse_shards_args(argv: Sequence[str] | None) -> tuple[ShardsConfig, list[str]]:
    """Splits argv into a validated, resolved ShardsConfig and the remaining (Beam) arguments."""
    known, rest = build_parser().parse_known_args(argv)
    overrides = settings.flag_overrides(known, ShardsConfig)
    base = ShardsConfig(data_dir=overrides.pop("data_dir"), output_dir=overrides.pop("output_dir"))
    cfg = settings.apply_overrides(base, overrides, flags=True).resolved()
    cfg.validate()
    return cfg, rest
