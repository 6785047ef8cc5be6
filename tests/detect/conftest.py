"""Fixtures of the detection job's tests: a tiny fake export (tests/helpers/fake_export.py), generated
field recordings (tests/detect/audio_files.py) and one job run over them, shared by the module."""
from __future__ import annotations

import os

import pytest

from tests.detect.audio_files import write_field_audio
from tests.helpers.fake_export import write_fake_export


@pytest.fixture(scope="session")
def fake_export(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export"))
    write_fake_export(path)
    return path


@pytest.fixture(scope="session")
def field_audio(tmp_path_factory) -> tuple[str, dict[str, str], dict[str, str]]:
    """(folder, {id: path} of good recordings, {id: expected dead-letter reason} of bad files)."""
    folder = str(tmp_path_factory.mktemp("field"))
    good, bad = write_field_audio(folder)
    return folder, good, bad


@pytest.fixture(scope="session")
def detect_run(fake_export, field_audio, tmp_path_factory):
    """One run with --embeddings over the field folder: (out dir, PipelineResult)."""
    from detect import run

    out = os.path.join(str(tmp_path_factory.mktemp("detect")), "out")
    result = run.run(["--model", fake_export, "--audio", field_audio[0], "--out", out, "--embeddings",
                      "--threshold", "0.5", "--progress_seconds", "0"])
    return out, result
