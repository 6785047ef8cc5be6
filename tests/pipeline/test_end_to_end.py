"""`pipeline.shards.run(argv)` end to end on a temp dataset with every kind of bad input, read back.

Expectations come from the CSVs and from decoding the FLACs independently with soundfile/librosa,
never from the job's own helpers.
"""
from __future__ import annotations

import collections
import glob
import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from core import schema
from core.errors import UserError
from pipeline import shards
from pipeline.demo_data import write_demo_dataset
from tests.conftest import (
    TINY_NUM_TEST,
    TINY_NUM_TRAIN,
)
from tests.helpers.job_results import counter, read_examples
from trainer.data import records

SR = 48000
SLICE_S = 4.0
NUM_FOLDS = 2
NUM_CLASSES = 24
STEREO_ID = "5744100aa"  # the 44.1 kHz stereo recording
SHORT_ID = "5407000bb"  # 2 s, shorter than the slice
FPONLY_ID = "f0f0f0f0f"  # fp rows only
BACKGROUND = 2  # the job's default --background_per_recording


def _add_flac(data_dir: str, sub: str, rid: str, y: np.ndarray, sr: int) -> None:
    sf.write(os.path.join(data_dir, sub, f"{rid}.flac"), y, sr, subtype="PCM_16", format="FLAC")


def _row(rid, species, t_min, t_max, f_min=1000.0, f_max=2000.0, songtype=1) -> dict:
    return {"recording_id": rid, "species_id": species, "songtype_id": songtype, "t_min": t_min,
            "f_min": f_min, "t_max": t_max, "f_max": f_max}


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    """A 6-recording demo dataset plus one of each bad input; returns (dir, expected reasons, bad files).

    Expected reasons: {("tp"|"fp", row index) or ("test", id): reason} for rows and test files. Bad
    files: a Counter {(recording id, reason): n} of the dead background slices of bad train files
    (those without room are worked out from the audio and boxes by the tests).
    """
    d = str(tmp_path_factory.mktemp("bad_dataset"))
    write_demo_dataset(d, num_train=6, num_test=2, duration_s=8.0, seed=3)
    tp = pd.read_csv(os.path.join(d, "train_tp.csv"), dtype=str, keep_default_na=False)
    fp = pd.read_csv(os.path.join(d, "train_fp.csv"), dtype=str, keep_default_na=False)
    good = tp.iloc[0]["recording_id"]
    rng = np.random.default_rng(7)

    t = np.arange(int(6.0 * 44100)) / 44100
    square = 0.999 * np.sign(np.sin(2 * np.pi * 440 * t))  # resampling overshoots it: clipping
    _add_flac(d, "train", STEREO_ID, np.stack([square, 0.97 * square], axis=1), 44100)
    _add_flac(d, "train", SHORT_ID, 0.1 * rng.standard_normal(2 * SR), SR)
    _add_flac(d, "train", FPONLY_ID, 0.1 * rng.standard_normal(8 * SR), SR)
    valid_flac = open(os.path.join(d, "train", f"{good}.flac"), "rb").read()
    open(os.path.join(d, "train", "0e0e0e0e0.flac"), "wb").close()  # empty
    open(os.path.join(d, "train", "7c7c7c7c7.flac"), "wb").write(valid_flac[: len(valid_flac) // 2])
    open(os.path.join(d, "train", "9a9a9a9a9.flac"), "wb").write(rng.bytes(5000))  # garbage
    open(os.path.join(d, "test", "0e0e0e0e1.flac"), "wb").close()
    open(os.path.join(d, "test", "9a9a9a9a8.flac"), "wb").write(b"not audio at all" * 100)

    extra_tp = [  # (row, expected reason or "" for a valid row)
        (_row(STEREO_ID, 3, 1.0, 2.0), ""),
        (_row(STEREO_ID, 5, 5.5, 5.9), ""),
        (_row(SHORT_ID, 7, 0.5, 1.0), ""),
        (_row("fffffffff", 1, 1.0, 2.0), "missing_flac"),
        (_row("0e0e0e0e0", 1, 1.0, 2.0), "empty_file"),
        (_row("7c7c7c7c7", 1, 1.0, 2.0), "truncated_flac"),
        (_row("9a9a9a9a9", 1, 1.0, 2.0), "not_audio"),
        (_row(good, 2, 3.0, 3.0), "t_min_not_before_t_max"),
        (_row(good, 2, "nan", 3.0), "nan_value"),
        (_row(good, 2, -1.0, 3.0), "negative_time"),
        (_row(good, 2, 20.0, 21.0), "event_outside_recording"),
        (_row(good, 24, 1.0, 2.0), "species_out_of_range"),
        (_row(good, -1, 1.0, 2.0), "species_out_of_range"),
        (dict(tp.iloc[0]), "duplicate_row"),
    ]
    extra_fp = [(_row(good, 4, 2.0, 1.0), "t_min_not_before_t_max"), (_row(SHORT_ID, 9, 0.2, 0.4), ""),
                (_row(good, 6, 7.5, 9.0), "event_outside_recording"),
                (_row(FPONLY_ID, 11, 3.0, 3.5), ""), (_row(FPONLY_ID, 12, 7.0, 7.9), ""),
                (_row("eeeeeeeee", 2, 1.0, 2.0), "missing_flac")]
    pd.concat([tp, pd.DataFrame([r for r, _ in extra_tp])]).to_csv(os.path.join(d, "train_tp.csv"), index=False)
    pd.concat([fp, pd.DataFrame([r for r, _ in extra_fp])]).to_csv(os.path.join(d, "train_fp.csv"), index=False)
    expected = {("tp", len(tp) + i): reason for i, (_, reason) in enumerate(extra_tp) if reason}
    expected.update({("fp", len(fp) + i): reason for i, (_, reason) in enumerate(extra_fp) if reason})
    expected[("test", "0e0e0e0e1")] = "empty_file"
    expected[("test", "9a9a9a9a8")] = "not_audio"
    # Every background slice of a recording whose file is bad carries the file's reason.
    bad_files = collections.Counter({
        (rid, reason): BACKGROUND for rid, reason in (("fffffffff", "missing_flac"), ("0e0e0e0e0", "empty_file"),
                                                       ("7c7c7c7c7", "truncated_flac"), ("9a9a9a9a9", "not_audio"),
                                                       ("eeeeeeeee", "missing_flac"))})
    return d, expected, bad_files


@pytest.fixture(scope="module")
def bad_run(bad_dataset, tmp_path_factory):
    data_dir, _, _ = bad_dataset
    out = os.path.join(str(tmp_path_factory.mktemp("bad_run")), "shards")
    result = shards.run(["--data_dir", data_dir, "--output_dir", out, "--num_folds", str(NUM_FOLDS),
                         "--slice_seconds", str(SLICE_S), "--runner", "DirectRunner"])
    return out, result


def _train_examples(out: str, manifest: dict) -> list[dict]:
    """Every train example, checked to sit in its fold's files of its kind."""
    exs = []
    for fold, by_kind in manifest["files"]["train_by_kind"].items():
        assert sorted(p for paths in by_kind.values() for p in paths) == manifest["files"]["train"][fold]
        for kind, rel in by_kind.items():
            assert all(p.startswith(f"train/fold-{fold}/{kind}-") for p in rel)
            for ex in read_examples([os.path.join(out, p) for p in rel], records.train_parse_spec(NUM_CLASSES)):
                assert ex["fold"] == int(fold) and ex["kind"].decode() == kind
                exs.append(ex)
    return exs


def _source_int16(data_dir: str, rid: str) -> np.ndarray:
    """What the stored audio must equal: the FLAC itself, or soxr's resample of its downmix."""
    y, sr = sf.read(os.path.join(data_dir, "train", f"{rid}.flac"), dtype="int16", always_2d=True)
    if sr == SR and y.shape[1] == 1:
        return y[:, 0]
    mono = y.astype(np.float64).mean(axis=1) / 32768.0
    res = np.round(soxr.resample(mono, sr, SR, quality="HQ") * 32768.0)
    return np.clip(res, -32768, 32767).astype(np.int16)


def _valid_boxes(data_dir: str, expected: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tp and fp rows the job must use: every row not expected to be rejected."""
    tp = pd.read_csv(os.path.join(data_dir, "train_tp.csv"), dtype={"recording_id": str})
    fp = pd.read_csv(os.path.join(data_dir, "train_fp.csv"), dtype={"recording_id": str})
    return (tp[~tp.index.isin({i for k, i in expected if k == "tp"})],
            fp[~fp.index.isin({i for k, i in expected if k == "fp"})])


def _exact_free_starts(num_samples: int, tp: pd.DataFrame) -> np.ndarray:
    """Every window start whose slice shares no positive-length stretch with a tp box (brute force)."""
    w = min(int(SLICE_S * SR), num_samples)
    starts = np.arange(num_samples - w + 1)
    free = np.ones(len(starts), bool)
    for r in tp.itertuples():
        free &= ~((r.t_min * SR < starts + w) & (r.t_max * SR > starts))
    return starts[free]


def test_examples_match_sources_and_labels(bad_dataset, bad_run):
    data_dir, expected, bad_files = bad_dataset
    out, _ = bad_run
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    tp_all = pd.read_csv(os.path.join(data_dir, "train_tp.csv"), dtype={"recording_id": str})
    fp_all = pd.read_csv(os.path.join(data_dir, "train_fp.csv"), dtype={"recording_id": str})
    tp, fp = _valid_boxes(data_dir, expected)
    folds = pd.read_csv(os.path.join(out, "folds.csv"), dtype={"recording_id": str}).set_index("recording_id").fold
    exs = _train_examples(out, manifest)
    by_kind = {k: [e for e in exs if e["kind"] == k.encode()] for k in schema.SLICE_KINDS}
    assert sorted(int(e["row_index"]) for e in by_kind["tp"]) == sorted(tp.index)
    assert sorted(int(e["row_index"]) for e in by_kind["fp"]) == sorted(fp.index)
    slice_n = int(SLICE_S * SR)
    for ex in exs:
        kind = ex["kind"].decode()
        rid = ex["recording_id"].decode()
        assert ex["fold"] == folds[rid]
        src = _source_int16(data_dir, rid)
        start, n = int(ex["slice_start"]), int(ex["num_samples"])
        assert int(ex["recording_num_samples"]) == len(src)
        assert n == min(slice_n, len(src)) and 0 <= start <= len(src) - n
        np.testing.assert_array_equal(schema.pcm16_to_numpy(ex["audio"]), src[start:start + n])
        lo, hi = start / SR, (start + n) / SR
        tp_in = tp[(tp.recording_id == rid) & (tp.t_min < hi) & (tp.t_max > lo)]
        fp_in = fp[(fp.recording_id == rid) & (fp.t_min < hi) & (fp.t_max > lo)]
        if kind == "background":
            assert tp_in.empty  # overlaps no tp box
            assert ex["row_index"] == -1 and ex["event/species_id"] == -1 and ex["event/songtype_id"] == -1
            assert (ex["event/t_min"], ex["event/f_min"], ex["event/f_max"]) == (0, 0, 0)
            assert math.isclose(ex["event/t_max"], n / SR, rel_tol=1e-6)
        else:
            row = (tp_all if kind == "tp" else fp_all).iloc[int(ex["row_index"])]
            assert rid == row.recording_id
            centre = (row.t_min + row.t_max) / 2 * SR
            if 0 < start and start + n < len(src):  # not clamped: centred on the event
                assert abs(start + n / 2 - centre) <= 1
            else:
                assert start <= centre <= start + n
            assert math.isclose(ex["event/t_min"], row.t_min - start / SR, abs_tol=1e-4)
            assert math.isclose(ex["event/t_max"], row.t_max - start / SR, abs_tol=1e-4)
            assert ex["event/species_id"] == row.species_id and ex["event/songtype_id"] == row.songtype_id
        positive, known = np.zeros(NUM_CLASSES, np.float32), np.zeros(NUM_CLASSES, np.float32)
        positive[tp_in.species_id.to_numpy()] = 1
        known[np.concatenate([tp_in.species_id.to_numpy(), fp_in.species_id.to_numpy()])] = 1
        np.testing.assert_array_equal(ex["labels"], positive)
        np.testing.assert_array_equal(ex["label_known"], known)
        assert sorted(ex["boxes/species_id"].tolist()) == sorted(tp_in.species_id.tolist() + fp_in.species_id.tolist())
        assert int(ex["boxes/is_tp"].sum()) == len(tp_in)
        source_sr, channels = (44100, 2) if rid == STEREO_ID else (SR, 1)
        assert (ex["source/sample_rate"], ex["source/channels"], ex["source/resampled"]) == (
            source_sr, channels, int(source_sr != SR))
    stereo = [e for e in by_kind["tp"] if e["recording_id"].decode() == STEREO_ID]
    assert len(stereo) == 2 and all(e["source/clipped_samples"] > 0 for e in stereo)
    # Background: distinct starts per recording, as many as asked unless the tp boxes leave less room.
    for rid in sorted(set(folds.index) - {rid for rid, _ in bad_files}):
        starts = [int(e["slice_start"]) for e in by_kind["background"] if e["recording_id"].decode() == rid]
        free = _exact_free_starts(len(_source_int16(data_dir, rid)), tp[tp.recording_id == rid])
        assert len(set(starts)) == len(starts) == min(BACKGROUND, len(free)), rid
    assert len([e for e in by_kind["background"] if e["recording_id"].decode() == FPONLY_ID]) == BACKGROUND


def test_dead_letters_counters_and_counts(bad_dataset, bad_run):
    data_dir, expected, bad_files = bad_dataset
    out, result = bad_run
    letters = [json.loads(line) for p in glob.glob(os.path.join(out, "rejected", "*.jsonl")) for line in open(p)]
    rows = {(r["kind"], r["row_index"] if r["kind"] != "test" else r["recording_id"]): r["reason"]
            for r in letters if r["kind"] != "background"}
    assert rows == expected
    # Background slices: the bad files' reason, and no room where the tp boxes leave too few windows.
    tp, _ = _valid_boxes(data_dir, expected)
    want_bg = collections.Counter(bad_files)
    folds = pd.read_csv(os.path.join(out, "folds.csv"), dtype={"recording_id": str})
    for rid in set(folds.recording_id) - {rid for rid, _ in bad_files}:
        free = len(_exact_free_starts(len(_source_int16(data_dir, rid)), tp[tp.recording_id == rid]))
        if free < BACKGROUND:
            want_bg[(rid, "no_room_for_background")] = BACKGROUND - free
    assert want_bg[(SHORT_ID, "no_room_for_background")] == BACKGROUND  # its tp box covers the only window
    got_bg = collections.Counter((r["recording_id"], r["reason"]) for r in letters if r["kind"] == "background")
    assert got_bg == want_bg
    for r in letters:
        assert r["detail"]
        if r["kind"] in ("tp", "fp"):
            assert r["row"] is not None
        else:
            assert r["path"].endswith(f"{r['recording_id']}.flac")
    reasons = collections.Counter((k, r) for (k, _), r in expected.items())
    reasons.update(collections.Counter(("background", r) for (_, r), n in want_bg.items() for _ in range(n)))
    for (kind, reason), n in reasons.items():
        assert counter(result, f"rejected_{kind}_{reason}") == n, (kind, reason)
    assert counter(result, "bad_file_not_audio") == 2  # one train, one test
    assert counter(result, "bad_file_missing_flac") == 2  # one with tp rows, one with fp rows only
    assert counter(result, "recordings_resampled") == 1 and counter(result, "recordings_downmixed") == 1
    assert counter(result, "clipped_samples") > 0
    c = json.load(open(os.path.join(out, "manifest.json")))["counts"]
    tp_csv = pd.read_csv(os.path.join(data_dir, "train_tp.csv"), dtype={"recording_id": str})
    fp_csv = pd.read_csv(os.path.join(data_dir, "train_fp.csv"), dtype={"recording_id": str})
    recordings = set(tp_csv.recording_id) | set(fp_csv.recording_id)
    assert (c["tp_rows"], c["fp_rows"]) == (len(tp_csv), len(fp_csv))
    assert c["training_recordings"] == len(recordings) and c["background_slices"] == BACKGROUND * len(recordings)
    per_kind = c["train_examples_per_kind"]
    assert per_kind["tp"] + c["tp_rejected"] == c["tp_rows"]
    assert per_kind["fp"] + c["fp_rejected"] == c["fp_rows"]
    assert per_kind["background"] + c["background_rejected"] == c["background_slices"]
    assert c["test_examples"] + c["test_rejected"] == c["test_files"] == 4
    assert c["tp_rejected"] == sum(1 for k, _ in expected if k == "tp")
    assert c["fp_rejected"] == sum(1 for k, _ in expected if k == "fp")
    assert c["background_rejected"] == sum(want_bg.values())
    assert c["train_examples"] == counter(result, "train_examples") == sum(per_kind.values())
    assert sum(c["train_examples_per_fold"].values()) == c["train_examples"]
    for fold, kinds in c["train_examples_per_fold_kind"].items():
        assert sum(kinds.values()) == c["train_examples_per_fold"][fold]
    assert {k: sum(v[k] for v in c["train_examples_per_fold_kind"].values()) for k in per_kind} == per_kind
    assert c["rejected_by_kind"]["background"] == dict(collections.Counter(
        r for (_, r), n in want_bg.items() for _ in range(n)))


def test_folds_cover_every_training_recording(bad_dataset, bad_run):
    data_dir, _, _ = bad_dataset
    out, _ = bad_run
    folds = pd.read_csv(os.path.join(out, "folds.csv"), dtype={"recording_id": str})
    tp = pd.read_csv(os.path.join(data_dir, "train_tp.csv"), dtype={"recording_id": str})
    fp = pd.read_csv(os.path.join(data_dir, "train_fp.csv"), dtype={"recording_id": str})
    assert set(folds.recording_id) == set(tp.recording_id) | set(fp.recording_id)
    assert FPONLY_ID in set(folds.recording_id)
    assert folds.recording_id.is_unique and set(folds.fold) == set(range(NUM_FOLDS))


def test_test_shards_hold_whole_recordings(tiny_dataset, tiny_shards):
    manifest = json.load(open(os.path.join(tiny_shards, "manifest.json")))
    exs = read_examples([os.path.join(tiny_shards, p) for p in manifest["files"]["test"]], records.test_parse_spec())
    files = sorted(glob.glob(os.path.join(tiny_dataset, "test", "*.flac")))
    assert sorted(e["recording_id"].decode() for e in exs) == sorted(os.path.basename(f)[:-5] for f in files)
    for ex in exs:
        src, _ = sf.read(os.path.join(tiny_dataset, "test", ex["recording_id"].decode() + ".flac"), dtype="int16")
        np.testing.assert_array_equal(schema.pcm16_to_numpy(ex["audio"]), src)
        assert ex["num_samples"] == len(src) and ex["schema_version"] == schema.SCHEMA_VERSION
    for name in ("sample_submission.csv", "test_truth.csv"):
        assert open(os.path.join(tiny_shards, name)).read() == open(os.path.join(tiny_dataset, name)).read()
    assert json.load(open(os.path.join(tiny_shards, "config.json")))["slice_seconds"] == 4.0


def test_rerun_refuses_then_overwrite_replaces(bad_dataset, tiny_dataset, tmp_path, capfd):
    out = str(tmp_path / "shards")
    args = ["--data_dir", tiny_dataset, "--output_dir", out, "--num_folds", "3", "--slice_seconds", "2"]
    shards.run(args + ["--max_shard_mb", "1000", "--background_per_recording", "0"])
    first = json.load(open(os.path.join(out, "manifest.json")))
    # No background slices asked: no background file (Beam's empty shard is removed), [] in the manifest.
    assert first["counts"]["background_slices"] == first["counts"]["train_examples_per_kind"]["background"] == 0
    assert all(kinds["background"] == [] for kinds in first["files"]["train_by_kind"].values())
    assert glob.glob(os.path.join(out, "train", "*", "background-*")) == []
    with pytest.raises(UserError, match="--overwrite"):
        shards.run(args)
    open(os.path.join(out, "stale.txt"), "w").write("from the first run")
    # The replacing run also exercises the multi-process DirectRunner and several shards per fold.
    capfd.readouterr()
    shards.run(args + ["--overwrite", "--max_shard_mb", "0.2", "--direct_num_workers", "2",
                       "--direct_running_mode", "multi_processing", "--progress_seconds", "0.001"])
    _assert_workers_report_their_share(capfd.readouterr().err, TINY_NUM_TRAIN + TINY_NUM_TEST)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert not os.path.exists(os.path.join(out, "stale.txt"))
    listed = {p for fold in manifest["files"]["train"].values() for p in fold}
    on_disk = {os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "train", "*", "*.tfrecord"))}
    assert listed == on_disk
    per_fold = manifest["counts"]["train_examples_per_fold"]
    example_mb = 2 * SR * 2 / 2**20
    for k, rel in manifest["files"]["train"].items():
        assert len(rel) >= math.ceil(per_fold[k] * example_mb / 0.2) > 1
        assert all(os.path.getsize(os.path.join(out, p)) <= 0.2 * 2**20 for p in rel)
    assert manifest["config"]["max_shard_mb"] == 0.2
    assert sum(len(read_examples([os.path.join(out, p)], records.train_parse_spec(NUM_CLASSES)))
               for p in listed) == manifest["counts"]["train_examples"]
    assert manifest["counts"]["train_examples_per_kind"]["tp"] == first["counts"]["train_examples_per_kind"]["tp"]
    assert manifest["counts"]["train_examples_per_kind"]["background"] > 0


def _assert_workers_report_their_share(stderr: str, tasks: int) -> None:
    """The worker subprocesses' progress lines (on the stderr they share with the driver): their own counts."""
    lines = [line for line in stderr.splitlines() if line.startswith("INFO core.progress: ")]
    shares = [re.search(r"worker pid (\d+), its share of (\d+) recordings over 2 processes\): (\d+)/~(\d+)", line)
              for line in lines]
    assert shares and all(shares), lines
    by_pid: dict[str, list[int]] = {}
    for m in shares:
        assert (int(m.group(2)), int(m.group(4))) == (tasks, -(-tasks // 2))
        by_pid.setdefault(m.group(1), []).append(int(m.group(3)))
    assert all(done == sorted(done) for done in by_pid.values())
    assert sum(done[-1] for done in by_pid.values()) <= tasks
















