"""An exported model's dir: the one place that names its files and the metadata beside them.

Written by the exporter (`make export`, trainer side, TensorFlow/Keras); read by the detection job
and by anyone deploying the model (only TensorFlow or a TFLite interpreter needed, never this
repository's training code). No I/O beyond reading/writing the metadata through core.fs.

    EXPORT/
      saved_model/          tf.saved_model with two signatures (names below):
          "serving_default"  waveform float32 [samples] (one recording, any length, at sample_rate)
                             -> scores float32 [W, C], embeddings float32 [W, D], starts int64 [W]
                             windows of window_samples every stride_samples (core.windows' rule:
                             the last ends at the recording's end; a short recording is zero-padded
                             to one window)
          "windows"          waveform float32 [B, window_samples] -> scores [B, C], embeddings [B, D]
      model.tflite          float32, windows: [B, window_samples] -> scores [B, C], embeddings [B, D]
                            (batch dynamic: shape signature [-1, window_samples], default shape [1, ...])
      model_int8.tflite     the same, dynamic-range int8 weights
      metadata.json         ExportMetadata below

    from core import export_layout
    meta = export_layout.read_metadata("exports/demo")          # ExportMetadata
    meta.window_samples, meta.species, meta.sample_rate
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from core import fs
from core.errors import UserError

FORMAT_VERSION = 1
METADATA = "metadata.json"
SAVED_MODEL = "saved_model"
TFLITE_FLOAT = "model.tflite"
TFLITE_INT8 = "model_int8.tflite"
RECORDING_SIGNATURE = "serving_default"
WINDOWS_SIGNATURE = "windows"
# Tensor names of both signatures.
INPUT = "waveform"
SCORES, EMBEDDINGS, STARTS = "scores", "embeddings", "starts"


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """What a consumer needs to feed an exported model and read its outputs.

    species: the name of each score column, in order (C of them). sample_rate: Hz the model expects
    (resample to it). window_samples / stride_samples: the window the model scores and the stride of
    the recording signature. embedding_size: D. num_models: fold models averaged (scores: mean;
    embeddings: concatenated, so D = num_models x the head's width). config: the run's resolved
    training config (provenance), runs: the run dirs exported.
    """

    species: tuple[str, ...]
    sample_rate: int
    window_samples: int
    stride_samples: int
    embedding_size: int
    num_models: int = 1
    preset: str = ""
    runs: tuple[str, ...] = ()
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in ("sample_rate", "window_samples", "stride_samples", "embedding_size", "num_models"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"export metadata: {name} must be a positive int, got {value!r}")
        if not self.species:
            raise UserError("export metadata: species is empty")
        if self.stride_samples > self.window_samples:
            raise UserError(f"export metadata: stride_samples {self.stride_samples} exceeds window_samples "
                            f"{self.window_samples}")

    @property
    def num_classes(self) -> int:
        return len(self.species)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["species"], d["runs"], d["config"] = list(self.species), list(self.runs), dict(self.config)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = METADATA) -> "ExportMetadata":
        if not isinstance(d, Mapping):
            raise UserError(f"{where}: expected a JSON object")
        version = d.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise UserError(f"{where}: format_version {version!r}, this code reads {FORMAT_VERSION}; "
                            f"re-export the model with this version")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("species", "sample_rate", "window_samples", "stride_samples", "embedding_size")
                   if k not in d]
        if missing:
            raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["species"] = tuple(str(s) for s in kwargs["species"])
        kwargs["runs"] = tuple(str(s) for s in kwargs.get("runs", ()))
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise UserError(f"{where}: {e}") from e


def path(export_dir: str, name: str) -> str:
    return fs.join(export_dir, name)


def write_metadata(export_dir: str, meta: ExportMetadata) -> str:
    """EXPORT/metadata.json; returns its path."""
    target = path(export_dir, METADATA)
    fs.write_bytes(target, json.dumps(meta.to_dict(), indent=2).encode())
    return target


def read_metadata(export_dir: str) -> ExportMetadata:
    """EXPORT/metadata.json as ExportMetadata; a UserError names what is missing or wrong."""
    where = path(export_dir, METADATA)
    if not fs.isfile(where):
        raise UserError(f"{where} not found: is {export_dir} a dir written by `make export`?")
    try:
        d = json.loads(fs.read_bytes(where))
    except ValueError as e:
        raise UserError(f"{where} is not valid JSON: {e}") from e
    return ExportMetadata.from_dict(d, where=where)
