"""Hostile input to the shards job: lying FLAC headers, NaN audio, ids that point outside the data dir,
test recordings in the training CSVs, odd letter case, lenient number spellings, worker errors and
two runs into one output dir.

Audio comes from pipeline.demo_data; the damaged files are made here by byte surgery that does not
use the code under test (the FLAC header is patched with struct at the offsets of the FLAC format,
and soundfile confirms what it now claims). Expected values come from the CSVs and from soundfile
reading the undamaged files.
"""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import struct

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from core import outlock, schema
from core.errors import UserError
from pipeline import (
    audio,
    demo_data,
    examples,
    flac_stream,
    labels,
    manifest_writer,
    shards,
    transforms,
)
from pipeline.config import ShardsConfig
from tests.helpers.common import csv_rows, flac_bytes
from tests.helpers.job_results import counter, read_examples
from tests.pipeline.conftest import small_job_args
from trainer.data import records

SR = 48000
NUM_CLASSES = 24
MAX_36_BITS = 2**36 - 1


# ---- building damaged files (independent of pipeline.flac_stream) ----

def _flac(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    return flac_bytes(y, sr, subtype)


def _set_streaminfo_total(flac: bytes, total: int) -> bytes:
    """The FLAC with STREAMINFO's 36-bit total-samples field set to `total` (0 = "unknown").

    soundfile writes "fLaC", a 4-byte block header, then STREAMINFO: the field is the low 36 bits of
    the big-endian 64-bit word at file offset 18 (FLAC format, METADATA_BLOCK_STREAMINFO).
    """
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0
    (word,) = struct.unpack(">Q", flac[18:26])
    patched = flac[:18] + struct.pack(">Q", (word >> 36 << 36) | total) + flac[26:]
    # What libsndfile now believes: 0 reads as "unknown" (its maximum count).
    assert sf.info(io.BytesIO(patched)).frames == (total or 2**63 - 1)
    return patched


def _demo_audio(seconds: float, seed: int) -> np.ndarray:
    return demo_data.background(int(seconds * SR), np.random.default_rng(seed))


# ---- FLAC length from the stream ----

@pytest.mark.parametrize("frames,sr,channels,subtype", [
    (3 * SR, SR, 1, "PCM_16"), (300001, 44100, 2, "PCM_16"), (50000, 96000, 1, "PCM_24"),
    (100, 8000, 1, "PCM_S8"), (4096, SR, 1, "PCM_16"), (4097, SR, 1, "PCM_16"),
])
def test_stream_samples_from_last_frame(frames, sr, channels, subtype):
    y = np.random.default_rng(frames).uniform(-0.5, 0.5, (frames, channels))
    data = _flac(y, sr, subtype)
    for lying in (0, frames // 2, MAX_36_BITS):
        info = flac_stream.find_streaminfo(_set_streaminfo_total(data, lying))
        assert info.total_samples == lying
        assert flac_stream.stream_samples(_set_streaminfo_total(data, lying), info) == frames
    info = flac_stream.find_streaminfo(data)
    assert flac_stream.stream_samples(data + b"TAG" + bytes(125), info) == frames  # trailing ID3v1 tag
    assert flac_stream.stream_samples(data[:-5], info) is None  # cut inside the last frame


def test_not_flac_has_no_streaminfo():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(100), SR, format="WAV")
    assert flac_stream.find_streaminfo(buf.getvalue()) is None
    assert flac_stream.find_streaminfo(b"fLaC") is None


@pytest.mark.parametrize("header", ["zeroed", "halved", "maxed"])
def test_decode_trusts_the_stream_not_the_header(header):
    y = _demo_audio(3.0, seed=1)
    good = _flac(y)
    want, _ = sf.read(io.BytesIO(good), dtype="int16")
    total = {"zeroed": 0, "halved": len(want) // 2, "maxed": MAX_36_BITS}[header]
    data = _set_streaminfo_total(good, total)
    got = audio.decode_pcm16(data, SR)  # maxed: the old decoder asked for 128 GiB here
    np.testing.assert_array_equal(got.samples, want)
    assert got.header_frames == (total or None) and got.source_frames == len(want)
    assert got.header_length_mismatch == (header != "zeroed")
    with pytest.raises(audio.AudioError) as e:  # cut off mid-stream: still truncated, whatever the header says
        audio.decode_pcm16(data[: len(data) // 2], SR)
    assert e.value.reason == audio.TRUNCATED_FLAC


def test_too_long_recording_is_refused_not_allocated():
    data = _set_streaminfo_total(_flac(_demo_audio(3.0, seed=2)), 0)
    assert audio.decode_pcm16(data, SR, max_seconds=3.0).num_samples == 3 * SR
    with pytest.raises(audio.AudioError) as e:
        audio.decode_pcm16(data, SR, max_seconds=2.5)
    assert e.value.reason == audio.TOO_LONG


def test_nonfinite_float_samples_are_counted_and_zeroed():
    y = np.full((1000, 2), 0.25, np.float32)
    y[10, 0], y[20, 1], y[30, :] = np.nan, np.inf, -np.inf
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="FLOAT")  # float audio named .flac is decoded by content
    got = audio.decode_pcm16(buf.getvalue(), SR)
    assert got.nonfinite_samples == 4
    want = np.full(1000, 8192, np.int16)  # 0.25 * 32768
    want[[10, 20]] = 4096  # one channel zeroed, the mean halves
    want[30] = 0
    np.testing.assert_array_equal(got.samples, want)


# ---- row fields ----

def _row(rid="5744100aa", species="3", songtype="1", t_min="1.0", t_max="2.0", kind="tp", index=0):
    return labels.CsvRow(kind, index, {"recording_id": rid, "species_id": species, "songtype_id": songtype,
                                       "t_min": t_min, "f_min": "100", "t_max": t_max, "f_max": "900"})


@pytest.mark.parametrize("rid", ["../test/5744100aa", "/abs/path/5744100aa", "a/b", "a\\b", "..", "x..y",
                                 "a b", "é5744100", "id\x00"])
def test_unsafe_recording_ids_are_dead_letters(rid):
    box, reason, _ = labels.parse_row(_row(rid=rid), NUM_CLASSES)
    assert box is None and reason == labels.BAD_RECORDING_ID


@pytest.mark.parametrize("rid", ["5744100aa", "A-b_c.9", " 5744100aa "])
def test_safe_recording_ids_pass(rid):
    assert labels.parse_row(_row(rid=rid), NUM_CLASSES)[0] is not None


@pytest.mark.parametrize("field,text,reason", [
    ("species", "1_4", labels.NOT_AN_INTEGER), ("species", "1e1", labels.NOT_AN_INTEGER),
    ("species", "\uff11", labels.NOT_AN_INTEGER),  # full-width digit one
    ("species", "1.5", labels.NOT_AN_INTEGER), ("songtype", "4e0", labels.NOT_AN_INTEGER),
    ("species", "three", labels.NOT_A_NUMBER), ("t_min", "1_0", labels.NOT_A_NUMBER),
    ("t_min", "\uff11", labels.NOT_A_NUMBER), ("t_min", "inf", labels.NAN_VALUE),
])
def test_lenient_number_spellings_are_refused(field, text, reason):
    box, got, _ = labels.parse_row(_row(**{field: text}), NUM_CLASSES)
    assert box is None and got == reason


@pytest.mark.parametrize("species,t_min", [("7", "1.0"), ("+7", "1"), ("7.0", "1e0"), (" 7 ", " 1.0 ")])
def test_plain_decimal_spellings_pass(species, t_min):
    box = labels.parse_row(_row(species=species, t_min=t_min), NUM_CLASSES)[0]
    assert (box.species_id, box.t_min) == (7, 1.0)


def test_duplicates_are_found_after_normalising_like_grouping():
    rows = [_row(index=0), _row(rid=" 5744100aa", index=1), _row(species="3.0", t_min=" 1", index=2),
            _row(species="4", index=3), _row(kind="fp", index=0)]
    valid, rejected = labels.validate_rows(rows, NUM_CLASSES)
    assert [(r.kind, r.row_index) for r, _ in valid] == [("tp", 0), ("tp", 3), ("fp", 0)]
    assert [(r.row_index, r.reason) for r in rejected] == [(1, labels.DUPLICATE_ROW), (2, labels.DUPLICATE_ROW)]


# ---- worker errors ----

_rows = csv_rows


def test_any_worker_error_becomes_dead_letters_and_the_job_goes_on(tmp_path, monkeypatch):
    for name in ("good", "bad", "test"):
        sf.write(str(tmp_path / f"{name}.flac"), _demo_audio(2.0, seed=3), SR, subtype="PCM_16")
    tasks = [
        examples.RecordingTask(examples.TRAIN, "good", str(tmp_path / "good.flac"), 0,
                               _rows("tp", "good", (1, 0.2, 0.4))),
        examples.RecordingTask(examples.TRAIN, "bad", str(tmp_path / "bad.flac"), 1,
                               _rows("tp", "bad", (2, 0.2, 0.4), (3, 1.0, 1.2)) + _rows("fp", "bad", (4, 0.5, 0.6)),
                               num_background=2),
        examples.RecordingTask(examples.TEST, "test", str(tmp_path / "test.flac")),
    ]
    real_read = transforms.read_bytes

    def flaky_read(path):  # what a storage client or an allocation could raise, beyond audio errors
        if path.endswith("bad.flac"):
            raise MemoryError("cannot allocate")
        if path.endswith("test.flac"):
            raise KeyError("odd")
        return real_read(path)

    monkeypatch.setattr(transforms, "read_bytes", flaky_read)
    cfg = ShardsConfig("unused", "unused", num_folds=2, slice_seconds=1.0)
    with test_pipeline.TestPipeline() as p:
        outs = (p | beam.Create(tasks) | beam.ParDo(transforms.ProcessRecording(cfg)).with_outputs(
            transforms.REJECTED_TAG, main=transforms.EXAMPLES_TAG))
        assert_that(outs[transforms.EXAMPLES_TAG] | beam.Keys(), equal_to([(0, "tp")]), label="OnlyGood")
        letters = outs[transforms.REJECTED_TAG] | beam.Map(json.loads) | beam.Map(
            lambda r: (r["kind"], r["row_index"], r["reason"], r["error_type"], "bad.flac" in r["detail"]
                       or "test.flac" in r["detail"]))
        assert_that(letters, equal_to([("tp", 0, "worker_error", "MemoryError", True),
                                       ("tp", 1, "worker_error", "MemoryError", True),
                                       ("fp", 0, "worker_error", "MemoryError", True),
                                       ("background", None, "worker_error", "MemoryError", True),
                                       ("background", None, "worker_error", "MemoryError", True),
                                       ("test", None, "worker_error", "KeyError", True)]), label="Letters")
    assert counter(p.result, "recordings_failed") == 2 and counter(p.result, "train_examples") == 1
    assert counter(p.result, "rejected_tp_worker_error") == 2 and counter(p.result, "rejected_test_worker_error") == 1


_args = small_job_args


def test_a_bug_hitting_every_recording_stops_the_job(small_dataset, tmp_path, monkeypatch):
    def broken(path):
        raise AttributeError("a bug")

    monkeypatch.setattr(transforms, "read_bytes", broken)
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="all 5 recordings failed"):
        shards.run(_args(small_dataset, out))
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    assert not os.path.exists(os.path.join(out, outlock.LOCK_NAME))


# ---- one job per output dir ----







# ---- end to end: one job over a dataset with every hostile input ----

NAN_ID, LONG_ID, EXTRA_TEST_ID, GHOST_ID = "0a0a0a0a0", "1b1b1b1b1", "7e57e57e5", "5ab000000"


@pytest.fixture(scope="module")
def hostile_dataset(tmp_path_factory):
    """Demo data plus one of each hostile input; returns (dir, facts the assertions need)."""
    d = str(tmp_path_factory.mktemp("hostile"))
    demo_data.write_demo_dataset(d, num_train=6, num_test=3, duration_s=6.0, seed=5)
    tp = pd.read_csv(os.path.join(d, "train_tp.csv"), dtype=str, keep_default_na=False)
    train_ids = list(dict.fromkeys(tp.recording_id))
    test_ids = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(d, "test", "*.flac")))
    path = lambda sub, rid, ext=".flac": os.path.join(d, sub, rid + ext)  # noqa: E731
    originals = {}
    for rid, total in zip(train_ids[:3], (0, 3 * SR, MAX_36_BITS)):  # zeroed, halved, maxed headers
        good = open(path("train", rid), "rb").read()
        originals[rid] = sf.read(io.BytesIO(good), dtype="int16")[0]
        open(path("train", rid), "wb").write(_set_streaminfo_total(good, total))
    os.rename(path("train", train_ids[3]), path("train", train_ids[3], ".FLAC"))
    os.rename(path("test", test_ids[0]), path("test", test_ids[0], ".FLAC"))
    # A float recording with NaN/inf samples, named .flac.
    y = _demo_audio(4.0, seed=9).astype(np.float32)
    bad_at = [100, 5000, 5001, 90000]
    y[bad_at] = [np.nan, np.inf, -np.inf, np.nan]
    sf.write(path("train", NAN_ID), y, SR, format="WAV", subtype="FLOAT")
    sf.write(path("train", LONG_ID), _demo_audio(8.0, seed=10), SR, format="FLAC", subtype="PCM_16")
    with open(path("test", test_ids[1]), "rb") as src, open(path("train", test_ids[1]), "wb") as dst:
        dst.write(src.read())  # a test recording that also gets training rows
    with open(path("test", test_ids[2]), "rb") as src, open(path("test", EXTRA_TEST_ID), "wb") as dst:
        dst.write(src.read())  # a test file that sample_submission does not list
    sub = pd.read_csv(os.path.join(d, "sample_submission.csv"), dtype=str)
    sub = pd.concat([sub, pd.DataFrame([{**{c: "0" for c in sub.columns}, "recording_id": GHOST_ID}])])
    sub.to_csv(os.path.join(d, "sample_submission.csv"), index=False)

    def row(rid, species="5", songtype="1", t_min="1.0", t_max="1.5"):
        return {"recording_id": rid, "species_id": species, "songtype_id": songtype, "t_min": t_min,
                "f_min": "500", "t_max": t_max, "f_max": "900"}

    extra = [  # (row, expected dead-letter reason or "" for an example)
        (row(NAN_ID), ""), (row(LONG_ID), "too_long"), (row(test_ids[1]), ""),
        (row(f"../test/{test_ids[2]}"), "bad_recording_id"),
        (row(os.path.join(d, "train", train_ids[4])), "bad_recording_id"),  # absolute path of a real file
        (row(f"{train_ids[4]}/x"), "bad_recording_id"), (row(".."), "bad_recording_id"),
        (row(f"{train_ids[4]} x"), "bad_recording_id"),
        (row(train_ids[4], species="1_4"), "not_an_integer"), (row(train_ids[4], species="1e1"), "not_an_integer"),
        (row(train_ids[4], species="\uff11"), "not_an_integer"), (row(train_ids[4], songtype="1.5"), "not_an_integer"),
        ({**tp.iloc[0].to_dict(), "recording_id": " " + tp.iloc[0].recording_id}, "duplicate_row"),
    ]
    pd.concat([tp, pd.DataFrame([r for r, _ in extra])]).to_csv(os.path.join(d, "train_tp.csv"), index=False)
    expected = {len(tp) + i: reason for i, (_, reason) in enumerate(extra) if reason}
    facts = {"tp_rows": len(tp) + len(extra), "expected": expected, "originals": originals, "train_ids": train_ids,
             "test_ids": test_ids, "nan_at": bad_at}
    return d, facts


@pytest.fixture(scope="module")
def hostile_run(hostile_dataset, tmp_path_factory):
    data_dir, _ = hostile_dataset
    out = os.path.join(str(tmp_path_factory.mktemp("hostile_run")), "shards")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = shards.run(["--data_dir", data_dir, "--output_dir", out, "--num_folds", "2",
                             "--slice_seconds", "2", "--max_recording_seconds", "7", "--allow_test_in_train",
                             "--runner", "DirectRunner"])
    return out, result, printed.getvalue()


def test_hostile_run_keeps_every_good_row_and_names_every_bad_one(hostile_dataset, hostile_run):
    data_dir, facts = hostile_dataset
    out, result, _ = hostile_run
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    c = manifest["counts"]
    assert c["tp_rows"] == facts["tp_rows"]
    assert manifest_writer.count_mismatches(c) == []  # every kind adds up (the driver checked it too)
    assert c["train_examples_per_kind"]["tp"] + c["tp_rejected"] == c["tp_rows"]
    assert c["test_examples"] + c["test_rejected"] == c["test_files"] == 4  # 3 + the unlisted one
    letters = [json.loads(line) for p in glob.glob(os.path.join(out, "rejected", "*.jsonl")) for line in open(p)]
    assert {(r["kind"], r["row_index"]): r["reason"] for r in letters if r["kind"] != "background"} == {
        ("tp", i): reason for i, reason in facts["expected"].items()}
    # The too-long recording's background slices share its fate; unsafe ids have none (no recording).
    assert sorted((r["recording_id"], r["reason"]) for r in letters
                  if r["kind"] == "background" and r["reason"] != "no_room_for_background") == [
        (LONG_ID, "too_long"), (LONG_ID, "too_long")]
    assert c["training_recordings"] == len(facts["train_ids"]) + 3  # + NAN_ID, LONG_ID, the test recording
    train = [e for rel in manifest["files"]["train"].values()
             for e in read_examples([os.path.join(out, p) for p in rel], records.train_parse_spec(NUM_CLASSES))]
    want_rows = set(range(facts["tp_rows"])) - set(facts["expected"])
    assert sorted(int(e["row_index"]) for e in train if e["kind"] == b"tp") == sorted(want_rows)
    assert all(labels.is_safe_id(e["recording_id"].decode()) for e in train)
    by_id = {}
    for e in train:
        by_id.setdefault(e["recording_id"].decode(), []).append(e)
    for rid, want in facts["originals"].items():  # lying headers: the whole stream, bit-exact
        for e in by_id[rid]:
            assert int(e["recording_num_samples"]) == len(want) == 6 * SR
            start, n = int(e["slice_start"]), int(e["num_samples"])
            np.testing.assert_array_equal(schema.pcm16_to_numpy(e["audio"]), want[start:start + n])
    assert facts["train_ids"][3] in by_id  # found as X.FLAC
    assert [e["kind"] for e in by_id[NAN_ID]].count(b"tp") == 1
    assert all(int(e["source/nonfinite_samples"]) == len(facts["nan_at"]) for e in by_id[NAN_ID])
    assert counter(result, "nonfinite_samples") == len(facts["nan_at"])
    assert counter(result, "header_length_mismatch") == 2 and counter(result, "header_length_unknown") == 1
    assert c["audio"] == {"nonfinite_samples": 4, "header_length_mismatch": 2, "header_length_unknown": 1}


def test_hostile_run_reports_the_test_set(hostile_dataset, hostile_run):
    _, facts = hostile_dataset
    out, _, printed = hostile_run
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["test_set"] == {"files_not_in_submission": [EXTRA_TEST_ID],
                                    "submission_without_file": [GHOST_ID],
                                    "test_in_train": [facts["test_ids"][1]], "ignored_files": []}
    test = read_examples([os.path.join(out, p) for p in manifest["files"]["test"]], records.test_parse_spec())
    assert sorted(e["recording_id"].decode() for e in test) == sorted(facts["test_ids"] + [EXTRA_TEST_ID])
    for needle in ("also trained on", EXTRA_TEST_ID, GHOST_ID):
        assert needle in printed


def test_test_recording_in_train_is_an_error_before_launch(hostile_dataset, tmp_path):
    data_dir, facts = hostile_dataset
    out = tmp_path / "out"
    with pytest.raises(UserError, match="--allow_test_in_train") as e:
        shards.run(["--data_dir", data_dir, "--output_dir", str(out), "--num_folds", "2"])
    assert facts["test_ids"][1] in str(e.value)
    assert not out.exists()
