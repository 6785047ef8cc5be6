"""The detection job resumed after a kill, its settings (channel, stride, per-species thresholds, the Kaggle
layout) and the mistakes it refuses with one `error:` line."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from detect import run, transforms
from tests.detect import reference
from tests.helpers.common import expect_user_error


def _copy(field_audio, tmp_path, ids) -> str:
    folder = str(tmp_path / "audio")
    for rid in ids:
        src = field_audio[1][rid]
        dst = os.path.join(folder, os.path.relpath(src, field_audio[0]))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
    return folder


def _part(out: str, rid: str) -> pd.DataFrame:
    return pq.read_table(os.path.join(out, "windows", rid + ".parquet")).to_pandas()


def test_a_killed_run_resumes_with_only_the_missing_recordings(fake_export, field_audio, tmp_path):
    ids = sorted(field_audio[1])
    audio, out = _copy(field_audio, tmp_path, ids), str(tmp_path / "out")
    argv = ["--model", fake_export, "--audio", audio, "--out", out, "--progress_seconds", "0"]
    run.run(argv)
    with open(os.path.join(out, "detections.csv")) as f:
        first = f.read()
    # What a kill leaves: two recordings without a part (one of them without its Raven table too), and
    # temp files of writes that never reached their rename.
    gone = ["site2/ogg_22k", "tone_8k"]
    for rid in gone:
        os.remove(os.path.join(out, "windows", rid + ".parquet"))
    os.remove(os.path.join(out, "raven", "tone_8k.txt"))
    os.remove(os.path.join(out, "summary.json"))
    leftovers = [os.path.join(out, "windows", "tone_8k.parquet.tmp-0123abcd"),
                 os.path.join(out, "raven", "tone_8k.txt.tmp-4567ef")]
    for path in leftovers:
        with open(path, "wb") as f:
            f.write(b"half a file")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(os.path.join(out, ".detect.lock"), "w") as f:  # the killed run's lock
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "token": "x", "started": "2026-01-01T00:00:00",
                   "command": "python -m detect.run"}, f)
    kept = {rid: os.stat(os.path.join(out, "windows", rid + ".parquet")).st_mtime_ns for rid in ids if rid not in gone}

    counters = run.read_counters(run.run(argv))
    assert counters[transforms.SCORED] == len(gone)
    assert counters[transforms.COMPLETE_BEFORE] == len(ids) - len(gone)
    assert not any(os.path.exists(p) for p in leftovers)
    assert not os.path.exists(os.path.join(out, ".detect.lock"))
    assert {rid: os.stat(os.path.join(out, "windows", rid + ".parquet")).st_mtime_ns for rid in kept} == kept
    with open(os.path.join(out, "detections.csv")) as f:
        assert f.read() == first
    assert os.path.exists(os.path.join(out, "raven", "tone_8k.txt"))
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["complete_before"] == len(ids) - len(gone)

    # Other output settings into the same OUT: refused, nothing touched; --overwrite recomputes all.
    with pytest.raises(Exception, match="other settings"):
        run.run(argv + ["--threshold", "0.9"])
    assert run.read_counters(run.run(argv + ["--overwrite"]))[transforms.SCORED] == len(ids)


def test_channel_stride_thresholds_and_the_kaggle_layout(fake_export, field_audio, tmp_path):
    ids = ["stereo_16k", "three_ch_44k"]
    audio, out = _copy(field_audio, tmp_path, ids), str(tmp_path / "out")
    submission = tmp_path / "sample_submission.csv"
    submission.write_text("recording_id,s0,s1,s2\nthree_ch_44k,0,0,0\nstereo_16k,0,0,0\n")
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"s1": 0.0, "2": 1.01 - 0.01}))  # s1 everywhere; s2 only at a score of 1
    run.run(["--model", fake_export, "--audio", audio, "--out", out, "--channel", "1", "--stride_seconds", "0.3",
             "--threshold", "0.6", "--threshold_file", str(thresholds), "--test_layout",
             "--sample_submission", str(submission), "--progress_seconds", "0"])
    maxima = {}
    for rid in ids:
        starts, scores, _ = reference.window_scores(fake_export, field_audio[1][rid], stride=2400, channel=1)
        got = _part(out, rid)
        np.testing.assert_allclose(got["start_s"], starts / 8000)
        np.testing.assert_allclose(np.stack(got["scores"]), scores, atol=2e-4)
        assert "embeddings" not in got.columns  # only with --embeddings
        maxima[rid] = np.stack(got["scores"]).max(axis=0)
    sub = pd.read_csv(os.path.join(out, "submission.csv"))
    assert list(sub.recording_id) == ["three_ch_44k", "stereo_16k"]
    np.testing.assert_allclose(sub[["s0", "s1", "s2"]].to_numpy(), np.stack([maxima["three_ch_44k"],
                                                                            maxima["stereo_16k"]]), atol=1e-6)
    det = pd.read_csv(os.path.join(out, "detections.csv"))
    windows = sum(len(_part(out, rid)) for rid in ids)
    assert (det.species_id == 1).sum() == windows
    assert (det.species_id == 2).sum() == 0
    s0 = np.concatenate([np.stack(_part(out, rid)["scores"])[:, 0] for rid in ids])
    assert (det.species_id == 0).sum() == int((s0 >= 0.6).sum())
    with open(os.path.join(out, "raven", "stereo_16k.txt")) as f:
        assert f.read().splitlines()[1].split("\t")[2] == "2"  # Raven counts channels from 1


def test_a_missing_channel_is_a_dead_letter(fake_export, field_audio, tmp_path):
    audio, out = _copy(field_audio, tmp_path, ["short_11k", "stereo_16k"]), str(tmp_path / "out")
    counters = run.read_counters(run.run(["--model", fake_export, "--audio", audio, "--out", out, "--channel", "1"]))
    assert counters[transforms.SCORED] == 1 and counters["rejected_no_such_channel"] == 1


@pytest.mark.parametrize("extra, fragment", [
    (["--stride_seconds", "0.6"], "must give 1 to 4000 samples"),
    (["--threshold", "1.5"], "--threshold must be <= 1"),
    (["--threshold_file", "THRESHOLDS"], "'s9' is neither a species of the model"),
    (["--test_layout"], "sample_submission.csv"),
    (["--num_workers_typo", "2"], "unknown flag(s): --num_workers_typo"),
])
def test_mistakes_stop_the_job_with_one_error_line(capsys, fake_export, field_audio, tmp_path, extra, fragment):
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"s9": 0.5}))
    extra = [str(thresholds) if a == "THRESHOLDS" else a for a in extra]
    expect_user_error(capsys, run.main, ["--model", fake_export, "--audio", field_audio[0], "--out",
                                         str(tmp_path / "out")] + extra, fragment)
    assert not os.path.exists(tmp_path / "out")


def test_refuses_an_out_it_did_not_write_and_a_model_dir_without_metadata(capsys, fake_export, field_audio, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("a,b\n")
    expect_user_error(capsys, run.main, ["--model", fake_export, "--audio", field_audio[0], "--out", str(other)],
                      "not the output of detect.run")
    assert os.listdir(other) == ["results.csv"]
    expect_user_error(capsys, run.main, ["--model", str(tmp_path), "--audio", field_audio[0], "--out",
                                         str(tmp_path / "o")], "metadata.json not found")
    expect_user_error(capsys, run.main, ["--model", fake_export, "--audio", field_audio[0], "--out",
                                         os.path.join(field_audio[0], "out")], "inside --audio")


def test_two_files_of_one_recording_id_score_one_and_reject_the_other(fake_export, field_audio, tmp_path):
    audio, out = _copy(field_audio, tmp_path, ["tone_8k"]), str(tmp_path / "out")
    shutil.copyfile(field_audio[1]["stereo_16k"], os.path.join(audio, "tone_8k.wav"))
    result = run.run(["--model", fake_export, "--audio", audio, "--out", out])
    counters = run.read_counters(result)
    assert counters[transforms.SCORED] == 1 and counters["rejected_duplicate_recording_id"] == 1
    starts, scores, _ = reference.window_scores(fake_export, field_audio[1]["tone_8k"])  # the .flac won
    np.testing.assert_allclose(np.stack(_part(out, "tone_8k")["scores"]), scores, atol=2e-4)


def test_the_benchmarks_plain_loop_writes_what_the_job_writes(fake_export, field_audio, detect_run, tmp_path):
    from benchmarks import bench_detect

    ids = sorted(field_audio[1])
    out = str(tmp_path / "loop")
    bench_detect.loop(fake_export, _copy(field_audio, tmp_path, ids), out)
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(out, "detections.csv")),
                                  pd.read_csv(os.path.join(detect_run[0], "detections.csv")))
    for rid in ids:
        with open(os.path.join(out, "raven", rid + ".txt")) as a, open(os.path.join(detect_run[0], "raven",
                                                                                  rid + ".txt")) as b:
            assert a.read() == b.read()
