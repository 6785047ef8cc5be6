"""The exported model dir's contract: metadata.json round-trips, and a bad one is a one-line UserError."""
from __future__ import annotations

import json

import pytest

from core import export_layout as layout
from core.errors import UserError

META = layout.ExportMetadata(species=("s0", "frog", "s2"), sample_rate=48000, window_samples=96000,
                             stride_samples=48000, embedding_size=128, num_models=2, preset="tiny",
                             runs=("runs/a/fold0", "runs/a/fold1"), config={"mel": {"n_mels": 32}, "seed": 0})


def test_metadata_round_trips_through_the_file(tmp_path):
    path = layout.write_metadata(str(tmp_path), META)
    assert path == str(tmp_path / "metadata.json")
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert on_disk["species"] == ["s0", "frog", "s2"] and on_disk["format_version"] == layout.FORMAT_VERSION
    back = layout.read_metadata(str(tmp_path))
    assert back == META
    assert back.num_classes == 3 and back.window_seconds == 2.0


def test_optional_keys_take_their_defaults(tmp_path):
    minimal = {"species": ["a"], "sample_rate": 16000, "window_samples": 16000, "stride_samples": 8000,
               "embedding_size": 4, "written_by_a_newer_tool": True}
    (tmp_path / "metadata.json").write_text(json.dumps(minimal))
    meta = layout.read_metadata(str(tmp_path))
    assert (meta.num_models, meta.preset, meta.runs, dict(meta.config)) == (1, "", (), {})


@pytest.mark.parametrize("change, fragment", [
    ({"format_version": 99}, "format_version 99"),
    ({"species": []}, "species is empty"),
    ({"sample_rate": 0}, "sample_rate must be a positive int"),
    ({"window_samples": 2.5}, "window_samples must be a positive int"),
    ({"embedding_size": True}, "embedding_size must be a positive int"),
    ({"stride_samples": 96001}, "exceeds window_samples"),
])
def test_bad_values_are_user_errors(tmp_path, change, fragment):
    (tmp_path / "metadata.json").write_text(json.dumps({**META.to_dict(), **change}))
    with pytest.raises(UserError, match=fragment):
        layout.read_metadata(str(tmp_path))


def test_missing_keys_bad_json_and_missing_file_are_named(tmp_path):
    with pytest.raises(UserError, match="not found.*make export"):
        layout.read_metadata(str(tmp_path))
    d = META.to_dict()
    del d["sample_rate"], d["embedding_size"]
    (tmp_path / "metadata.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="missing key\\(s\\) sample_rate, embedding_size"):
        layout.read_metadata(str(tmp_path))
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        layout.read_metadata(str(tmp_path))
    (tmp_path / "metadata.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        layout.read_metadata(str(tmp_path))


def test_file_names_are_the_documented_ones():
    assert (layout.SAVED_MODEL, layout.TFLITE_FLOAT, layout.TFLITE_INT8, layout.METADATA) == (
        "saved_model", "model.tflite", "model_int8.tflite", "metadata.json")
    assert (layout.RECORDING_SIGNATURE, layout.WINDOWS_SIGNATURE) == ("serving_default", "windows")
    assert layout.path("gs://b/export", layout.METADATA) == "gs://b/export/metadata.json"
