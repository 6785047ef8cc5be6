"""Flags of `detect.run` as a frozen dataclass (flags generated from its fields by core.settings); everything
else goes to Beam's PipelineOptions.

    cfg, beam_argv = parse_detect_args(["--model", "exports/demo", "--audio", "field/", "--out", "det/"])
    cfg.window_stride(meta)          # stride in samples: --stride_seconds or the export's own
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Sequence

from core import checks, export_layout, fs, settings
from core.errors import UserError
from core.windows import seconds_to_samples

# Settings that do not change any output: a resumed run may give other values.
RESUMABLE_CHANGES = frozenset({"batch_size", "overwrite", "progress_seconds", "tf_threads"})
MAX_BATCH = 4096


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    """Resolved settings of one detection run (saved as OUT/config.json)."""

    model: str = dataclasses.field(metadata={"help": "exported model dir (`make export`), local or gs://"})
    audio: str = dataclasses.field(metadata={"help": "folder or gs:// prefix of .flac/.wav/.ogg recordings "
                                                     "(searched recursively)"})
    out: str = dataclasses.field(metadata={"help": "output dir (local or gs://); re-running into it resumes"})
    stride_seconds: float | None = _field(None, "window stride; default: the export's")
    channel: int | None = _field(None, "score this channel only (0-based); default: channels averaged")
    threshold: float = _field(0.5, "detections: score >= threshold (every species)")
    threshold_file: str = _field("", "JSON {species name or id: threshold} overriding --threshold per species")
    batch_size: int = _field(32, "windows per model call")
    tf_threads: int = _field(0, "TensorFlow threads per worker process; 0: the cores / the worker processes "
                                "on a multi-process DirectRunner (each worker's own share, not all of them "
                                "each), TensorFlow's default (every core) elsewhere")
    embeddings: bool = _field(False, "also write each window's embedding vector in OUT/windows")
    test_layout: bool = _field(False, "also write OUT/submission.csv (recording_id,s0..: max over windows) in "
                                      "--sample_submission's order")
    sample_submission: str = _field("", "with --test_layout: the ids' order (default: sample_submission.csv "
                                        "beside AUDIO)")
    max_recording_seconds: float = _field(4 * 3600.0, "a longer recording becomes a dead letter `too_long`")
    overwrite: bool = _field(False, "delete OUT's previous detections first (instead of resuming)")
    progress_seconds: float = _field(30.0, "log recordings done / total this often (0: off)")

    def __post_init__(self) -> None:
        settings.check_types(self, UserError)

    def resolved(self) -> "DetectConfig":
        """Local paths made absolute (workers may start elsewhere); the default sample_submission filled in."""
        def absolute(path: str) -> str:
            return path if not path or fs.is_remote(path) else os.path.abspath(path)

        cfg = dataclasses.replace(self, model=absolute(self.model), audio=absolute(self.audio),
                                  out=absolute(self.out), threshold_file=absolute(self.threshold_file),
                                  sample_submission=absolute(self.sample_submission))
        if cfg.test_layout and not cfg.sample_submission:
            parent = fs.dirname(cfg.audio.rstrip("/"))
            cfg = dataclasses.replace(cfg, sample_submission=fs.join(parent, "sample_submission.csv"))
        return cfg

    def validate(self) -> None:
        checks.number("--threshold", self.threshold, 0, 1)
        checks.number("--batch_size", self.batch_size, 1, MAX_BATCH)
        checks.number("--tf_threads", self.tf_threads, 0, 4096)
        checks.number("--max_recording_seconds", self.max_recording_seconds, 0, low_open=True)
        checks.number("--progress_seconds", self.progress_seconds, 0)
        if self.stride_seconds is not None:
            checks.number("--stride_seconds", self.stride_seconds, 0, low_open=True)
        if self.channel is not None:
            checks.number("--channel", self.channel, 0, 1024)
        for flag, path in (("--model", self.model), ("--audio", self.audio)):
            if fs.real(path) == fs.real(self.out):
                raise UserError(f"--out must differ from {flag}")
        if fs.real(self.out).startswith(fs.real(self.audio).rstrip("/") + "/"):
            raise UserError(f"--out {self.out} is inside --audio {self.audio}: its tables would be listed as "
                            f"recordings on the next run; choose a dir outside it")

    def window_stride(self, meta: export_layout.ExportMetadata) -> int:
        """The stride in samples; UserError unless 0 < stride <= the model's window."""
        if self.stride_seconds is None:
            return meta.stride_samples
        stride = seconds_to_samples(self.stride_seconds, meta.sample_rate)
        if not 0 < stride <= meta.window_samples:
            raise UserError(f"--stride_seconds {self.stride_seconds} must give 1 to {meta.window_samples} samples "
                            f"(the model's window of {meta.window_seconds:g} s); it gives {stride}")
        return stride

    def changes_from(self, saved: dict) -> list[str]:
        """Settings of a previous run in OUT (its config.json) that differ from this one's and change outputs."""
        mine = dataclasses.asdict(self)
        return [f"--{k}: {saved.get(k)!r} -> {v!r}" for k, v in mine.items()
                if k not in RESUMABLE_CHANGES and saved.get(k) != v]


def thresholds(cfg: DetectConfig, species: Sequence[str]) -> list[float]:
    """One threshold per species: --threshold, overridden by --threshold_file's {name or id: value}."""
    values = [cfg.threshold] * len(species)
    if not cfg.threshold_file:
        return values
    data = settings.read_json_object(cfg.threshold_file)
    index = {name: i for i, name in enumerate(species)}
    for key, value in data.items():
        i = index.get(key)
        if i is None and key.strip().isdigit() and int(key) < len(species):
            i = int(key)
        if i is None:
            raise UserError(f"{cfg.threshold_file}: {key!r} is neither a species of the model nor an id 0.."
                            f"{len(species) - 1} (species: {', '.join(species[:8])}{' ...' if len(species) > 8 else ''})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UserError(f"{cfg.threshold_file}: threshold of {key!r} must be a number in [0, 1], got "
                            f"{json.dumps(value)}")
        values[i] = float(value)
    return values


def build_parser() -> argparse.ArgumentParser:
    p = checks.ArgumentParser(prog="python -m detect.run", allow_abbrev=False,
                              description="An exported model over recordings -> detections (Apache Beam). "
                                          "Unknown flags go to Beam.")
    settings.add_flags(p, DetectConfig, "job settings (saved as OUT/config.json)")
    return p


def parse_detect_args(argv: Sequence[str] | None) -> tuple[DetectConfig, list[str]]:
    """Splits argv into a validated, resolved DetectConfig and the remaining (Beam) arguments."""
    known, rest = build_parser().parse_known_args(argv)
    overrides = settings.flag_overrides(known, DetectConfig)
    base = DetectConfig(model=overrides.pop("model"), audio=overrides.pop("audio"), out=overrides.pop("out"))
    cfg = settings.apply_overrides(base, overrides, flags=True).resolved()
    cfg.validate()
    return cfg, rest
