"""Pure functions of pipeline/: crop arithmetic, folds, row validation, audio decoding, schema round trip."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from core import crop, schema
from core.errors import UserError
from pipeline import audio, examples, labels
from pipeline.config import ShardsConfig, parse_shards_args
from pipeline.folds import assign_folds
from tests.helpers.common import flac_bytes
from trainer.data import records

SR = 48000


# ---- crop ----

@pytest.mark.parametrize("t_min,t_max,n,want_start", [
    (20.0, 22.0, 60 * SR, 21 * SR - 5 * SR),  # middle: centred on 21 s
    (0.2, 0.5, 60 * SR, 0),  # left edge: clamped to 0
    (59.0, 60.0, 60 * SR, 50 * SR),  # right edge: window ends at the recording's end
    (1.0, 2.0, 4 * SR, 0),  # recording shorter than the window: kept whole
])
def test_slice_bounds_edges(t_min, t_max, n, want_start):
    start, end = crop.slice_bounds(t_min, t_max, SR, 10 * SR, n)
    assert start == want_start
    assert end - start == min(10 * SR, n)


def test_slice_bounds_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sr, n, length = int(rng.integers(100, 2000)), int(rng.integers(1, 5000)), int(rng.integers(1, 3000))
        t0 = rng.uniform(0, n / sr)
        t1 = rng.uniform(t0, n / sr)
        start, end = crop.slice_bounds(t0, t1, sr, length, n)
        # Brute force: among all legal windows, the one whose start is nearest centre - length // 2.
        centre = round((t0 + t1) * sr / 2)
        legal = np.arange(0, max(n - length, 0) + 1)
        assert start == legal[np.argmin(np.abs(legal - (centre - length // 2)))]
        assert end == min(start + length, n)


def test_overlaps_needs_positive_overlap():
    assert crop.overlaps(1.0, 3.0, 2.0, 4.0)
    assert crop.overlaps(0.0, 10.0, 2.0, 4.0)
    assert not crop.overlaps(0.0, 2.0, 2.0, 4.0)  # touching is not overlapping
    assert not crop.overlaps(4.0, 5.0, 2.0, 4.0)


# ---- folds ----

def _fold_rows(num_recordings=60, num_species=6, seed=0):
    rng = np.random.default_rng(seed)
    rids, species = [], []
    for r in range(num_recordings):
        for _ in range(int(rng.integers(1, 4))):
            rids.append(f"rec{r:03d}")
            species.append(r % num_species)
    return rids, species


def test_folds_grouped_stratified_deterministic():
    rids, species = _fold_rows()
    folds = assign_folds(rids, species, num_folds=5, seed=1)
    assert set(folds) == set(rids) and set(folds.values()) == set(range(5))
    # Stratified: each species' rows spread over the folds, not piled into a few.
    for s in range(6):
        per_fold = np.bincount([folds[r] for r, sp in zip(rids, species) if sp == s], minlength=5)
        assert per_fold.min() >= 1, per_fold
    assert assign_folds(rids, species, 5, 1) == folds
    assert assign_folds(rids, species, 5, 2) != folds


def test_folds_too_few_recordings():
    with pytest.raises(UserError, match="too few"):
        assign_folds(["a", "a", "b"], [0, 1, 0], num_folds=3, seed=0)


def test_folds_tiny_dataset_without_full_classes_still_groups():
    rids = [f"r{i}" for i in range(6)]
    folds = assign_folds(rids, list(range(6)), num_folds=3, seed=0)  # every species once
    assert sorted(np.bincount(list(folds.values()))) == [2, 2, 2]


# ---- labels ----

def _raw(**kw) -> dict:
    row = {"recording_id": "abc", "species_id": "3", "songtype_id": "1", "t_min": "1.5", "f_min": "100",
           "t_max": "2.5", "f_max": "900"}
    row.update(kw)
    return row


@pytest.mark.parametrize("change,reason", [
    ({}, ""),
    ({"recording_id": " "}, labels.MISSING_RECORDING_ID),
    ({"t_min": ""}, labels.NAN_VALUE),
    ({"t_max": "nan"}, labels.NAN_VALUE),
    ({"f_min": "abc"}, labels.NOT_A_NUMBER),
    ({"species_id": "2.5"}, labels.NOT_AN_INTEGER),
    ({"species_id": "24"}, labels.SPECIES_OUT_OF_RANGE),
    ({"species_id": "-1"}, labels.SPECIES_OUT_OF_RANGE),
    ({"t_min": "-0.5"}, labels.NEGATIVE_TIME),
    ({"t_min": "2.5"}, labels.T_MIN_NOT_BEFORE_T_MAX),
    ({"f_min": "900"}, labels.BAD_FREQUENCY),
])
def test_parse_row_reasons(change, reason):
    box, got, detail = labels.parse_row(labels.CsvRow("tp", 7, _raw(**change)), num_classes=24)
    assert got == reason
    if reason:
        assert box is None and detail
    else:
        assert box == labels.Box(7, True, 3, 1, 1.5, 2.5, 100.0, 900.0)


def test_validate_rows_keeps_first_duplicate():
    rows = [labels.CsvRow("tp", 0, _raw()), labels.CsvRow("tp", 1, _raw()), labels.CsvRow("fp", 0, _raw())]
    valid, rejected = labels.validate_rows(rows, 24)
    assert [(r.kind, r.row_index) for r, _ in valid] == [("tp", 0), ("fp", 0)]
    assert [(r.row_index, r.reason) for r in rejected] == [(1, labels.DUPLICATE_ROW)]


def test_read_csv_checks(tmp_path):
    (tmp_path / "ok.csv").write_text(",".join(labels.REQUIRED_COLUMNS) + ",extra\nx,1,1,0,1,1,2,q\n")
    table = labels.read_csv(str(tmp_path / "ok.csv"), required=True)
    assert table.rows[0]["t_max"] == "1" and table.rows[0]["extra"] == "q"
    (tmp_path / "bad.csv").write_text("recording_id,species_id\nx,1\n")
    with pytest.raises(UserError, match="songtype_id"):
        labels.read_csv(str(tmp_path / "bad.csv"), required=True)
    with pytest.raises(UserError, match="not found"):
        labels.read_csv(str(tmp_path / "none.csv"), required=True)
    assert labels.read_csv(str(tmp_path / "none.csv"), required=False) is None


# ---- audio ----

_flac_bytes = flac_bytes


def test_decode_exact_for_48k_mono():
    y = np.random.default_rng(0).integers(-32768, 32768, SR, dtype=np.int16)
    got = audio.decode_pcm16(_flac_bytes(y, SR), SR)
    np.testing.assert_array_equal(got.samples, y)
    assert (got.resampled, got.clipped_samples, got.source_channels) == (False, 0, 1)


def test_decode_resamples_and_downmixes():
    t = np.arange(44100) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 1000 * t), 0.1 * np.sin(2 * np.pi * 1000 * t)
    got = audio.decode_pcm16(_flac_bytes(np.stack([left, right], 1), 44100), SR)
    assert (got.source_sample_rate, got.source_channels, got.resampled) == (44100, 2, True)
    assert got.num_samples == SR
    # The downmix is the mean: a 0.3-amplitude 1 kHz sine at 48 kHz, away from the edges.
    want = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    np.testing.assert_allclose(got.samples[1000:-1000] / 32768, want[1000:-1000], atol=2e-3)


def test_to_pcm16_counts_clipping():
    # 0.99999 * 32768 rounds to 32768, one past the int16 maximum: clipped too.
    pcm, clipped = audio.to_pcm16(np.array([0.0, 0.5, 1.2, -1.5, -1.0, 0.99999, 0.9999]))
    assert clipped == 3
    np.testing.assert_array_equal(pcm, [0, 16384, 32767, -32768, -32768, 32767, 32765])


@pytest.mark.parametrize("make,reason", [
    (lambda b: b"", audio.EMPTY_FILE),
    (lambda b: b[: len(b) // 2], audio.TRUNCATED_FLAC),
    (lambda b: b[:30], audio.TRUNCATED_FLAC),
    (lambda b: bytes(range(256)) * 20, audio.NOT_AUDIO),
])
def test_decode_failures_have_reasons(make, reason):
    good = _flac_bytes(np.random.default_rng(1).standard_normal(SR) * 0.1, SR)
    with pytest.raises(audio.AudioError) as e:
        audio.decode_pcm16(make(good), SR)
    assert e.value.reason == reason


# ---- schema round trip ----

def test_train_example_round_trip_through_tf_parse():
    cfg = ShardsConfig("d", "o", slice_seconds=1.0, num_classes=5)
    samples = np.random.default_rng(2).integers(-3000, 3000, 3 * SR, dtype=np.int16)
    decoded = audio.DecodedAudio(samples, SR, 44100, 2, True, 3)
    event = labels.Box(4, True, 2, 1, 1.2, 1.6, 500.0, 900.0)
    others = [event, labels.Box(5, False, 3, 4, 0.5, 1.1, 100.0, 200.0), labels.Box(6, True, 1, 1, 2.5, 2.9, 1, 2)]
    values = examples.train_example_values("abc123def", decoded, event, others, fold=2, cfg=cfg)
    record = schema.serialize_example(schema.TRAIN_FIELDS, values)
    parsed = tf.io.parse_single_example(record, records.train_parse_spec(5))
    start = int(parsed["slice_start"])
    assert start == round(1.4 * SR) - SR // 2
    np.testing.assert_array_equal(schema.pcm16_to_numpy(parsed["audio"].numpy()), samples[start:start + SR])
    np.testing.assert_allclose(records.pcm16_to_float(parsed["audio"]).numpy(), samples[start:start + SR] / 32768)
    assert parsed["recording_id"].numpy() == b"abc123def" and int(parsed["fold"]) == 2
    assert (int(parsed["source/sample_rate"]), int(parsed["source/clipped_samples"])) == (44100, 3)
    assert math.isclose(float(parsed["event/t_min"]), 1.2 - start / SR, abs_tol=1e-5)
    # The box at 2.5-2.9 s lies outside the slice [0.9, 1.9): only the event and the fp box remain.
    assert tf.sparse.to_dense(parsed["boxes/species_id"]).numpy().tolist() == [2, 3]
    assert tf.sparse.to_dense(parsed["boxes/is_tp"]).numpy().tolist() == [1, 0]
    np.testing.assert_array_equal(parsed["labels"].numpy(), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(parsed["label_known"].numpy(), [0, 0, 1, 1, 0])  # tp 2 and fp 3
    assert parsed["kind"].numpy() == b"tp" and int(parsed["schema_version"]) == 2
    # The same recording's fp box as the event: an fp slice centred on 0.8 s -> [0.3, 1.3) s.
    values = examples.train_example_values("abc123def", decoded, others[1], others, fold=2, cfg=cfg)
    parsed = tf.io.parse_single_example(schema.serialize_example(schema.TRAIN_FIELDS, values),
                                        records.train_parse_spec(5))
    assert (parsed["kind"].numpy(), int(parsed["row_index"]), int(parsed["slice_start"])) == (b"fp", 5, round(0.3 * SR))
    np.testing.assert_array_equal(parsed["labels"].numpy(), [0, 0, 1, 0, 0])  # tp 2 at 1.2-1.6 is inside
    np.testing.assert_array_equal(parsed["label_known"].numpy(), [0, 0, 1, 1, 0])


def test_schema_version_1_is_refused_with_the_way_out():
    schema.check_version(schema.SCHEMA_VERSION, "here")
    with pytest.raises(schema.SchemaError, match=r"version 1.*re-run `make shards`"):
        schema.check_version(1, "train/fold-0/train-00000-of-00001.tfrecord")


def _tf_feature(value, dtype: str) -> tf.train.Feature:
    """The tf.train.Feature TF itself builds for one value or list of values of `dtype`."""
    items = value if isinstance(value, list) else [value]
    if dtype == schema.BYTES:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=items))
    if dtype == schema.INT:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=items))
    return tf.train.Feature(float_list=tf.train.FloatList(value=items))


@pytest.mark.parametrize("num_boxes", [0, 3])
def test_serialize_example_is_byte_identical_to_tensorflow(num_boxes):
    rng = np.random.default_rng(num_boxes)
    values = {f.name: [int(x) for x in rng.integers(-2**40, 2**40, num_boxes)] if f.is_list else int(rng.integers(2**40))
              for f in schema.TRAIN_FIELDS if f.dtype == schema.INT}
    values.update({f.name: [float(x) for x in rng.uniform(-1e4, 1e4, num_boxes).astype(np.float32)] if f.is_list
                   else float(np.float32(rng.uniform(-1e4, 1e4)))
                   for f in schema.TRAIN_FIELDS if f.dtype == schema.FLOAT})
    values["labels"] = [float(x) for x in rng.integers(0, 2, 5)]  # fixed length: num_classes
    values["label_known"] = [float(x) for x in rng.integers(0, 2, 5)]
    values["kind"] = b"background"
    values["recording_id"] = b"rec\x00\xff"
    values["audio"] = rng.integers(-2**15, 2**15, 999, dtype=np.int16).astype("<i2").tobytes()
    ours = schema.serialize_example(schema.TRAIN_FIELDS, values)
    theirs = tf.train.Example(features=tf.train.Features(
        feature={f.name: _tf_feature(values[f.name], f.dtype) for f in schema.TRAIN_FIELDS})).SerializeToString(
        deterministic=True)
    assert ours == theirs
    parsed = tf.io.parse_single_example(ours, records.train_parse_spec(5))
    assert parsed["audio"].numpy() == values["audio"] and parsed["recording_id"].numpy() == values["recording_id"]
    assert tf.sparse.to_dense(parsed["boxes/t_min"]).numpy().tolist() == values["boxes/t_min"]
    assert tf.sparse.to_dense(parsed["boxes/species_id"]).numpy().tolist() == values["boxes/species_id"]
    assert parsed["labels"].numpy().tolist() == values["labels"]
    assert parsed["label_known"].numpy().tolist() == values["label_known"] and parsed["kind"].numpy() == b"background"
    assert int(parsed["slice_start"]) == values["slice_start"]


def test_workers_serialize_without_tensorflow():
    # What a Beam worker imports to build examples must not pull in TensorFlow (~3 s, ~500 MB each).
    code = ("import sys; from core import schema; from pipeline import transforms; "
            "schema.serialize_example(schema.TEST_FIELDS, {f.name: b'' if f.dtype == schema.BYTES else 0 "
            "for f in schema.TEST_FIELDS}); assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- config ----

def test_parse_shards_args_splits_job_and_beam_flags():
    cfg, rest = parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--num_folds", "3",
                                   "--runner", "DirectRunner", "--direct_num_workers", "2"])
    assert (cfg.data_dir, cfg.output_dir) == (os.path.abspath("in"), os.path.abspath("out"))
    assert (cfg.num_folds, cfg.slice_samples, cfg.background_per_recording) == (3, 10 * SR, 2)
    assert rest == ["--runner", "DirectRunner", "--direct_num_workers", "2"]
    for bad in (["--num_folds", "1"], ["--slice_seconds", "0"], ["--num_folds", "x"],
                ["--slice_seconds", "1e-6"],  # rounds to 0 samples at 48 kHz
                ["--background_per_recording", "-1"]):
        with pytest.raises(UserError):
            parse_shards_args(["--data_dir", "in", "--output_dir", "out", *bad])


def test_max_shard_mb_must_hold_one_train_example():
    """A cap below one 10 s slice (48 kHz int16 = 0.92 MiB) is refused, not silently exceeded."""
    one_slice_mib = 10 * SR * 2 / 2**20
    with pytest.raises(UserError, match="cannot hold one train example"):
        parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--max_shard_mb", str(one_slice_mib)])
    cfg, _ = parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--max_shard_mb", "8"])
    assert 0 < cfg.max_test_fill_bytes < cfg.max_train_fill_bytes < 8 * 2**20
    # Below one 60 s test recording (5.49 MiB): each test recording gets a file of its own.
    cfg, _ = parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--max_shard_mb", "2"])
    assert cfg.max_test_fill_bytes == 1 and cfg.max_train_fill_bytes > 0


def test_event_starting_at_the_recording_end_is_outside():
    duration = 12.0
    inside = labels.Box(row_index=0, is_tp=True, species_id=1, songtype_id=1, t_min=11.0, t_max=duration,
                        f_min=100.0, f_max=200.0)
    at_end = dataclasses.replace(inside, t_min=duration, t_max=duration + 0.5 / SR)
    assert labels.outside_recording(inside, duration, SR) == ""
    assert "t_min" in labels.outside_recording(at_end, duration, SR)


def test_pcm16_to_bytes_refuses_floats():
    assert schema.pcm16_to_bytes(np.array([1, -2], np.int16)) == b"\x01\x00\xfe\xff"
    with pytest.raises(schema.SchemaError, match="int16"):
        schema.pcm16_to_bytes(np.array([0.5, -0.5], np.float32))
