"""The band-statistics baseline (trainer.baseline.run) on hand-built schema-v2 shards.

Three species call as tones in distinct bands (pipeline.demo_data.synthesize_call) over seeded noise;
a fourth species never calls. Every recording gives a tp slice (its call) and a background slice
(noise); recordings of species 1 also give an fp slice of species 0 (noise, so species 0 has known
negatives). Six test recordings with known truth. Expected values come from the hand-built labels
and from sklearn, never from the baseline's code.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import schema
from pipeline.demo_data import synthesize_call
from tests.helpers import common
from tests.helpers.common import sklearn_lwlrap
from tests.helpers.shard_factory import train_example, write_shards
from trainer.baseline import run as baseline

SR = 16000
SLICE_S = 2.0
NUM_CLASSES = 4  # species 3 has no example at all
BANDS = {0: (400.0, 600.0), 1: (1500.0, 1900.0), 2: (4000.0, 4800.0)}
FOLDS = (0, 1, 2)
RECORDINGS_PER_SPECIES = 2
# Small, fast front end: 1 s windows, 32 mels.
FLAGS = ["--window_seconds", "1.0", "--mel.n_fft", "512", "--mel.hop_length", "256", "--mel.n_mels", "32"]
TEST_CALLS = {"t0": [0], "t1": [1], "t2": [2], "t3": [0, 2], "t4": [1], "t5": []}


def make_audio(seed: int, species: list[int], seconds: float = SLICE_S,
               starts: list[float] | None = None) -> np.ndarray:
    """int16: seeded noise plus a 0.8 s tone call of each species (at `starts`, default 0.6 s)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 0.02, int(seconds * SR))
    for i, s in enumerate(species):
        call = 0.3 * synthesize_call("tone", *BANDS[s], seconds=0.8, rate_hz=5.0, sample_rate=SR)
        at = int((starts[i] if starts else 0.6) * SR)
        y[at:at + len(call)] += call
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)


def train_slices(flipped: bool = False) -> dict[int, list[dict]]:
    """Per fold: tp + background slice per recording, an fp slice of species 0 on species-1 recordings.

    flipped: the background slice of f1s1r0 (known for no species) holds a species-0 call instead of noise.
    """
    by_fold: dict[int, list[dict]] = {}
    seed = 0
    for fold in FOLDS:
        examples = []
        for s in BANDS:
            for r in range(RECORDINGS_PER_SPECIES):
                rec = f"f{fold}s{s}r{r}"
                common = dict(fold=fold, t_min=0.6, t_max=1.4, sample_rate=SR, num_classes=NUM_CLASSES)
                seed += 1
                examples.append(train_example(rec, species=s, audio=make_audio(seed, [s]), **common))
                seed += 1
                noise = make_audio(seed, [0] if (flipped and rec == "f1s1r0") else [])
                examples.append(train_example(rec, species=-1, audio=noise, kind=schema.KIND_BACKGROUND, **common))
                if s == 1:
                    seed += 1
                    examples.append(train_example(rec, species=0, audio=make_audio(seed, []), kind=schema.KIND_FP,
                                                  row_index=r, **common))
        by_fold[fold] = examples
    return by_fold


def add_test_set(shards_dir: str) -> None:
    """Writes test/ records, sample_submission.csv (reversed order) and test_truth.csv; updates the manifest."""
    import tensorflow as tf

    rel = "test/test-00000-of-00001.tfrecord"
    os.makedirs(os.path.join(shards_dir, "test"))
    with tf.io.TFRecordWriter(os.path.join(shards_dir, rel)) as writer:
        for i, (rec, species) in enumerate(TEST_CALLS.items()):
            audio = make_audio(1000 + i, species, seconds=4.0, starts=[0.5, 2.5][:len(species)])
            values = {"schema_version": schema.SCHEMA_VERSION, "recording_id": rec,
                      "audio": schema.pcm16_to_bytes(audio), "sample_rate": SR, "num_samples": len(audio),
                      "source/sample_rate": SR, "source/channels": 1, "source/resampled": 0,
                      "source/clipped_samples": 0, "source/nonfinite_samples": 0}
            writer.write(schema.serialize_example(schema.TEST_FIELDS, values))
    ids = list(TEST_CALLS)[::-1]
    cols = [f"s{c}" for c in range(NUM_CLASSES)]
    pd.DataFrame({"recording_id": ids, **{c: 0 for c in cols}}).to_csv(
        os.path.join(shards_dir, "sample_submission.csv"), index=False)
    truth = [[int(c in TEST_CALLS[r]) for c in range(NUM_CLASSES)] for r in ids]
    pd.concat([pd.DataFrame({"recording_id": ids}), pd.DataFrame(truth, columns=cols)], axis=1).to_csv(
        os.path.join(shards_dir, "test_truth.csv"), index=False)
    path = os.path.join(shards_dir, "manifest.json")
    manifest = json.loads(Path(path).read_text())
    manifest["files"]["test"] = [rel]
    manifest["counts"]["test_examples"] = len(TEST_CALLS)
    Path(path).write_text(json.dumps(manifest))


def run(shards_dir: str, out_dir: Path, *extra: str) -> tuple[dict, Path, str]:
    """baseline.main with the small front end; returns (report, out_dir, printed log)."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        report = baseline.main(["--shards_dir", shards_dir, "--out_dir", str(out_dir), *FLAGS, *extra])
    return report, out_dir, log.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, str]:
    base = write_shards(str(tmp_path_factory.mktemp("base")), train_slices(), sample_rate=SR,
                        slice_seconds=SLICE_S, num_classes=NUM_CLASSES)
    add_test_set(base)
    flipped = write_shards(str(tmp_path_factory.mktemp("flipped")), train_slices(flipped=True), sample_rate=SR,
                           slice_seconds=SLICE_S, num_classes=NUM_CLASSES)
    return {"base": base, "flipped": flipped}


@pytest.fixture(scope="module")
def default_run(shards, tmp_path_factory):
    return run(shards["base"], tmp_path_factory.mktemp("out") / "baseline")




def test_separates_species_in_distinct_bands(default_run):
    report, out_dir, _ = default_run
    oof = pd.read_csv(out_dir / "oof.csv", dtype={"recording_id": str})
    ys, ss = [f"y{c}" for c in range(NUM_CLASSES)], [f"s{c}" for c in range(NUM_CLASSES)]
    per_rec = oof.groupby("recording_id")[ys + ss].max()
    # Each recording's truth is its species, known from how it was built.
    expected_truth = np.array([[int(c == int(rec[3])) for c in range(NUM_CLASSES)] for rec in per_rec.index])
    np.testing.assert_array_equal(per_rec[ys].to_numpy(), expected_truth)
    value = sklearn_lwlrap(expected_truth, per_rec[ss].to_numpy())
    assert value > 0.95
    assert report["recording_lwlrap"] == pytest.approx(value)
    for fold in FOLDS:
        assert report["folds"][str(fold)]["recording_lwlrap"] > 0.9
    # Species 3 never occurs: no model, its prior (0) as a constant, said in the log.
    assert (oof["s3"] == 0).all()
    assert all(3 in report["folds"][str(k)]["constant_classes"] for k in FOLDS)


def test_output_files(default_run, shards):
    report, out_dir, log = default_run
    written = [e for fold in FOLDS for e in train_slices()[fold]]
    oof = pd.read_csv(out_dir / "oof.csv", dtype={"recording_id": str})
    assert list(oof.columns) == (["recording_id", "fold", "kind", "row_index", "slice_start"]
                                 + [f"y{c}" for c in range(NUM_CLASSES)] + [f"s{c}" for c in range(NUM_CLASSES)])
    assert len(oof) == len(written) == report["num_slices"]
    got = {(r.recording_id, r.kind): (r.fold, [getattr(r, f"y{c}") for c in range(NUM_CLASSES)])
           for r in oof.itertuples()}
    assert got == {(e["recording_id"], e["kind"]): (e["fold"], list(e["labels"])) for e in written}
    assert np.isfinite(oof[[f"s{c}" for c in range(NUM_CLASSES)]].to_numpy()).all()
    assert report["slices_by_kind"] == {"tp": 18, "fp": 6, "background": 18}
    assert set(report["folds"]) == {"0", "1", "2"} and len(report["per_class"]) == NUM_CLASSES
    assert report["per_class"][3]["recording_lwlrap"] is None  # no positive recording
    # Slice level: over the slices with a positive (tp slices here).
    rows = oof[[f"y{c}" for c in range(NUM_CLASSES)]].to_numpy()
    assert report["slice_lwlrap"] == pytest.approx(
        sklearn_lwlrap(rows, oof[[f"s{c}" for c in range(NUM_CLASSES)]].to_numpy()))

    sample = pd.read_csv(Path(shards["base"]) / "sample_submission.csv", dtype={"recording_id": str})
    sub = pd.read_csv(out_dir / "submission.csv", dtype={"recording_id": str})
    assert list(sub.columns) == list(sample.columns)
    assert list(sub["recording_id"]) == list(sample["recording_id"])  # sample's order, not the shards'
    truth = pd.read_csv(Path(shards["base"]) / "test_truth.csv", dtype={"recording_id": str})
    expected = sklearn_lwlrap(truth.iloc[:, 1:].to_numpy(), sub.iloc[:, 1:].to_numpy())
    assert report["test_lwlrap"] == pytest.approx(expected)
    assert report["test_lwlrap"] > 0.9

    config = json.loads((out_dir / "settings.json").read_text())
    assert config["baseline"]["window_seconds"] == 1.0 and config["mel"]["scaling"] == "db"
    assert config["mel"]["fmax"] == SR / 2  # lowered to Nyquist
    assert baseline.load_report(out_dir)["settings"] == config
    assert "reading training slices: 42/42" in log and "reading test recordings: 6/6" in log
    assert "constant score" in log


def test_unknown_rows_are_masked_with_weight_zero(shards, tmp_path):
    """w=0: a slice known for no species (the flipped background) cannot move species 0's fit; w=1: it does."""
    def s0(shards_dir: str, name: str, weight: str) -> np.ndarray:
        _, out, _ = run(shards_dir, tmp_path / name, "--unlabelled_weight", weight, "--submission", "no")
        oof = pd.read_csv(out / "oof.csv", dtype={"recording_id": str})
        return oof.loc[oof["fold"] != 1, ["s0", "s1", "fold"]].to_numpy(np.float64)  # folds fitted with fold 1

    base0, flipped0 = s0(shards["base"], "b0", "0"), s0(shards["flipped"], "f0", "0")
    np.testing.assert_allclose(flipped0[:, 0], base0[:, 0], rtol=1e-6, atol=1e-9)
    # Species 1 has no known negative under w=0 (no fp of it): a constant, its share of positive training
    # slices: 2 tp slices of 14 per fold, two training folds -> 4/28.
    np.testing.assert_allclose(base0[:, 1], 4 / 28)

    base1, flipped1 = s0(shards["base"], "b1", "1"), s0(shards["flipped"], "f1", "1")
    assert np.abs(flipped1[:, 0] - base1[:, 0]).max() > 1e-3


def expect_user_error(capsys, argv: list[str], *fragments: str) -> None:
    common.expect_user_error(capsys, baseline.main, argv, *fragments, only_line=True)


@pytest.mark.parametrize("flag, value", [("--window_seconds", "nan"), ("--window_seconds", "inf"),
                                         ("--window_seconds", "-1"), ("--window_seconds", "0"),
                                         ("--unlabelled_weight", "-0.5"), ("--unlabelled_weight", "nan"),
                                         ("--window_seconds", "abc"), ("--submission", "maybe")])
def test_bad_flags_are_one_error_line(capsys, tmp_path, flag, value):
    expect_user_error(capsys, ["--shards_dir", str(tmp_path), "--out_dir", str(tmp_path / "o"), flag, value],
                      flag)


def test_user_mistakes_are_one_error_line(capsys, tmp_path, shards):
    out = str(tmp_path / "out")
    expect_user_error(capsys, ["--shards_dir", str(tmp_path / "nowhere"), "--out_dir", out], "does not exist")
    expect_user_error(capsys, ["--shards_dir", shards["flipped"], "--out_dir", out, "--submission", "yes"],
                      "no test examples")
    (tmp_path / "v1").mkdir()
    v1 = write_shards(str(tmp_path / "v1"), {0: [], 1: []}, manifest_version=1)
    expect_user_error(capsys, ["--shards_dir", v1, "--out_dir", out], "schema version 1", "make shards")
    one_fold = write_shards(str(tmp_path / "one"), {0: train_slices()[0]}, sample_rate=SR, num_classes=NUM_CLASSES)
    expect_user_error(capsys, ["--shards_dir", one_fold, "--out_dir", out, *FLAGS], "at least two")
    assert not os.path.exists(out) or not os.listdir(out)  # nothing written before the checks
    corrupt = tmp_path / "corrupt"
    shutil.copytree(shards["flipped"], corrupt)
    bad = corrupt / "train" / "fold-0" / "tp-00000-of-00001.tfrecord"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated mid-record
    expect_user_error(capsys, ["--shards_dir", str(corrupt), "--out_dir", out, *FLAGS], str(bad), "corrupt")
