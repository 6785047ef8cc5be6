"""Hostile input, round 2, the Beam job: --overwrite removes only a shards job's output, bad rows and files are dead letters without a hang, a full disk is one error line."""
from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.errors import UserError
from pipeline import audio, demo_data, examples, labels, shards
from tests.helpers.round2 import (
    SHARDS_CFG,
    _fake_finished_run,
    _shards_args,
    _snapshot,
)


def test_shards_refuse_a_training_run_dir_with_or_without_overwrite(tiny_dataset, tmp_path):
    run_dir = _fake_finished_run(tmp_path / "run")
    before = _snapshot(run_dir)
    for extra in ((), ("--overwrite",)):
        with pytest.raises(UserError) as e:
            shards.run(_shards_args(tiny_dataset, run_dir, *extra))
        assert "best.keras" in str(e.value) and "summary.json" in str(e.value)
        assert "pass --overwrite" not in str(e.value)  # the old advice led straight to the deletion
    assert _snapshot(run_dir) == before


def test_shards_overwrite_refuses_data_reached_through_a_symlink(tiny_dataset, tiny_shards, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_shards, out)  # a previous shards job's output ...
    shutil.copytree(tiny_dataset, out / "data")  # ... holding the dataset
    link = tmp_path / "link"
    link.symlink_to(out / "data")
    with pytest.raises(UserError, match="is inside it"):
        shards.run(_shards_args(link, out, "--overwrite"))
    assert _snapshot(out / "data") == _snapshot(tiny_dataset)


def _flac_bytes(seconds: float, sample_rate: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, demo_data.background(int(seconds * sample_rate), np.random.default_rng(seed)), sample_rate,
             format="FLAC")
    return buf.getvalue()


def _task(rows, kind="tp", num_background=2):
    csv_rows = tuple(labels.CsvRow(kind, i, {"recording_id": "rec", "species_id": "3", "songtype_id": "1",
                                             "t_min": "1.0", "f_min": "500", "t_max": "1.5", "f_max": "900", **r})
                     for i, r in enumerate(rows))
    return examples.RecordingTask(examples.TRAIN, "rec", "train/rec.flac", 0, csv_rows, num_background)


def test_a_songtype_id_out_of_range_rejects_only_its_row():
    rows = [{"t_min": str(t), "t_max": str(t + 0.5)} for t in (1.0, 3.0, 5.0, 7.0)]
    rows.insert(2, {"songtype_id": "99999999999999999999"})
    out = examples.process(_task(rows), lambda: _flac_bytes(12.0, 48000), SHARDS_CFG)
    assert [(r.row_index, r.reason) for r in out.rejections] == [(2, labels.SONGTYPE_OUT_OF_RANGE)]
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["tp"] * 4


@pytest.mark.parametrize("source_rate,f_min,f_max", [
    (48000, "25000", "26000"), (48000, "500", "1e12"), (8000, "1000", "5000"), (8000, "500", "4001"),
])
def test_a_box_above_nyquist_is_bad_frequency(source_rate, f_min, f_max):
    rows = [{}, {"f_min": f_min, "f_max": f_max, "t_min": "3.0", "t_max": "3.5"}]
    out = examples.process(_task(rows), lambda: _flac_bytes(8.0, source_rate), SHARDS_CFG)
    assert [(r.row_index, r.reason) for r in out.rejections] == [(1, labels.BAD_FREQUENCY)]
    assert "Nyquist" in out.rejections[0].detail
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["tp"]
    at_nyquist = [{"f_min": "500", "f_max": str(min(source_rate, 48000) // 2)}]  # still inside the band
    assert not examples.process(_task(at_nyquist), lambda: _flac_bytes(8.0, source_rate), SHARDS_CFG).rejections


@pytest.mark.parametrize("damage", ["duplicate_id", "only_recording_id", "26_columns"])
def test_a_bad_sample_submission_stops_the_job_before_launch(tiny_dataset, tmp_path, damage):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train_tp.csv", "train_fp.csv"):
        shutil.copy(os.path.join(tiny_dataset, name), data / name)
    sample = pd.read_csv(os.path.join(tiny_dataset, "sample_submission.csv"), dtype=str)
    if damage == "duplicate_id":
        sample = pd.concat([sample, sample.iloc[:1]])
    elif damage == "only_recording_id":
        sample = sample[["recording_id"]]
    else:
        sample = sample.assign(s24="0", s25="0")
    sample.to_csv(data / "sample_submission.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="sample_submission.csv"):
        shards.run(_shards_args(data, out))
    assert not out.exists()  # stopped before anything was written


def test_a_flac_with_an_id3v1_trailer_is_decoded_whole():
    good = _flac_bytes(8.0, 48000, seed=3)
    tagged = good + b"TAG" + b"title".ljust(30, b"\0") + bytes(95)  # the 128-byte ID3v1 layout
    want, _ = sf.read(io.BytesIO(good), dtype="int16")
    assert sf.info(io.BytesIO(tagged)).frames == len(want)  # plain soundfile reads every frame
    np.testing.assert_array_equal(audio.decode_pcm16(tagged, 48000).samples, want)
    task = _task([{}, {"t_min": "3.0", "t_max": "3.5"}, {"t_min": "5.0", "t_max": "5.5"}])
    task = dataclasses.replace(task, rows=task.rows[:2] + (labels.CsvRow("fp", 0, {**task.rows[2].raw}),))
    out = examples.process(task, lambda: tagged, SHARDS_CFG)
    assert out.rejections == [] and out.file_error is None
    assert sorted(e.kind for e in out.examples) == ["background"] * 2 + ["fp"] + ["tp"] * 2


def test_fifo_dev_zero_huge_and_outside_files_are_dead_letters_without_a_hang(tiny_dataset, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(tiny_dataset, data)
    train_ids = sorted(f[:-5] for f in os.listdir(data / "train"))
    test_ids = sorted(f[:-5] for f in os.listdir(data / "test"))
    (data / "train" / f"{train_ids[0]}.flac").unlink()
    (data / "train" / f"{train_ids[0]}.flac").symlink_to("/dev/zero")
    outside = tmp_path / "elsewhere.flac"
    shutil.move(data / "train" / f"{train_ids[1]}.flac", outside)  # good audio, but outside the data dir
    (data / "train" / f"{train_ids[1]}.flac").symlink_to(outside)
    with open(data / "train" / f"{train_ids[2]}.flac", "r+b") as f:
        f.truncate(1 << 30)  # 1 GiB (sparse): more than 600 s of any audio the job reads
    (data / "test" / f"{test_ids[0]}.flac").unlink()
    os.mkfifo(data / "test" / f"{test_ids[0]}.flac")  # nobody ever writes into it
    job = subprocess.run([sys.executable, "-m", "pipeline.shards", *_shards_args(data, out)], capture_output=True,
                         text=True, timeout=240, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert job.returncode == 0, job.stderr[-3000:]
    letters = [json.loads(line) for p in sorted((out / "rejected").glob("*.jsonl")) for line in open(p)]
    reasons = {}
    for r in letters:
        reasons.setdefault(r["recording_id"], set()).add((r["kind"], r["reason"]))
    assert reasons[train_ids[0]] and {reason for _, reason in reasons[train_ids[0]]} == {"not_a_file"}
    assert {reason for _, reason in reasons[train_ids[1]]} == {"outside_data_dir"}
    assert {reason for _, reason in reasons[train_ids[2]]} == {"too_large"}
    assert reasons[test_ids[0]] == {("test", "not_a_file")}
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["counts"]["test_examples"] == len(test_ids) - 1


class _FullDisk:
    """A file handle on a disk that is full: the file exists, no byte can be written into it."""

    def __init__(self, real):
        self._real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self._real.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("fills_at", ["manifest", "train shards"])
def test_a_full_disk_is_one_error_line_and_leaves_no_temp_files(tiny_dataset, tmp_path, monkeypatch, fills_at):
    from core import fs

    # Both are written through core.fs: the manifest to a temp name, then renamed; the shards into
    # the temp dir of pipeline.tfrecord_sink, then renamed.
    real_open = fs.open_file

    def fills(path: str) -> bool:
        if fills_at == "manifest":
            return os.path.basename(path).startswith("manifest.json")
        return "beam-temp-" in path

    def open_file(path, mode="r"):
        handle = real_open(path, mode)
        return _FullDisk(handle) if "w" in mode and fills(str(path)) else handle

    monkeypatch.setattr(fs, "open_file", open_file)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no space left on the file system mounted at /"):
        shards.run(_shards_args(tiny_dataset, out))
    left = [os.path.relpath(os.path.join(d, n), out) for d, dirs, names in os.walk(out) for n in names + dirs]
    assert "manifest.json" not in left  # no manifest: nothing takes the output for finished
    assert not [p for p in left if "beam-temp" in p or p.endswith(".writing")], left


def test_shards_refuse_an_output_dir_inside_a_run_dir_or_another_shards_dir(tiny_dataset, tiny_shards, tmp_path):
    run_dir = _fake_finished_run(tmp_path / "run")
    for parent in (run_dir, tiny_shards):
        before = _snapshot(parent)
        with pytest.raises(UserError, match="is inside the (run|shards) dir"):
            shards.run(_shards_args(tiny_dataset, os.path.join(parent, "new_shards")))
        assert _snapshot(parent) == before
