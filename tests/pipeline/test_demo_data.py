"""The synthetic RFCX-layout dataset: layout, formats, determinism, and calls that are really there."""
from __future__ import annotations

import filecmp
import glob
import os
import re
import subprocess
import sys

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.errors import UserError
from pipeline.demo_data import NUM_SPECIES, species_calls, write_demo_dataset
from tests.conftest import TINY_DURATION_S, TINY_NUM_TEST, TINY_NUM_TRAIN

COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]


def _csv(data_dir, name: str) -> pd.DataFrame:
    return pd.read_csv(os.path.join(data_dir, name), dtype={"recording_id": str})


@pytest.fixture(scope="module")
def exhaustive_twin(tiny_dataset, tmp_path_factory) -> str:
    """The tiny dataset's arguments with --label_mode exhaustive (the fixture's own is partial, the default)."""
    out = str(tmp_path_factory.mktemp("exhaustive"))
    write_demo_dataset(out, num_train=TINY_NUM_TRAIN, num_test=TINY_NUM_TEST, duration_s=TINY_DURATION_S, seed=0,
                       label_mode="exhaustive")
    return out


def test_layout_and_formats(tiny_dataset):
    tp = pd.read_csv(os.path.join(tiny_dataset, "train_tp.csv"), dtype={"recording_id": str})
    fp = pd.read_csv(os.path.join(tiny_dataset, "train_fp.csv"), dtype={"recording_id": str})
    sub = pd.read_csv(os.path.join(tiny_dataset, "sample_submission.csv"), dtype={"recording_id": str})
    truth = pd.read_csv(os.path.join(tiny_dataset, "test_truth.csv"), dtype={"recording_id": str})
    assert list(tp.columns) == COLUMNS and list(fp.columns) == COLUMNS
    assert list(sub.columns) == ["recording_id"] + [f"s{i}" for i in range(24)] == list(truth.columns)
    train = sorted(glob.glob(os.path.join(tiny_dataset, "train", "*.flac")))
    test = sorted(glob.glob(os.path.join(tiny_dataset, "test", "*.flac")))
    assert (len(train), len(test)) == (10, 3)
    ids = [os.path.basename(p)[:-5] for p in train + test]
    assert all(re.fullmatch(r"[0-9a-f]{9}", i) for i in ids) and len(set(ids)) == len(ids)
    assert set(tp.recording_id) == {os.path.basename(p)[:-5] for p in train}
    assert sorted(sub.recording_id) == sorted(truth.recording_id) == sorted(os.path.basename(p)[:-5] for p in test)
    for path in train + test:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (48000, 1, "PCM_16", "FLAC")
        assert info.frames == 12 * 48000
    assert (tp.t_min >= 0).all() and (tp.t_max <= 12).all() and (tp.t_min < tp.t_max).all()
    assert tp.species_id.between(0, 23).all() and set(tp.songtype_id) <= {1, 4}
    assert (truth.iloc[:, 1:].sum(axis=1) >= 1).all()


def test_species_calls_are_distinct_and_in_range():
    calls = species_calls()
    assert len(calls) == NUM_SPECIES
    assert all(84 <= c.f_min < c.f_max <= 15056 for c in calls)
    signatures = {(c.shape, round(c.f_min)) for c in calls}
    assert len(signatures) == NUM_SPECIES
    assert len({c.shape for c in calls}) >= 4


def test_tp_boxes_hold_the_call(exhaustive_twin):
    """Energy inside each tp box clearly exceeds the same band outside every call in that band.

    On exhaustive labels, which list every call: with partial labels the unlabelled calls would
    count as "outside".
    """
    tp, fp = _csv(exhaustive_twin, "train_tp.csv"), _csv(exhaustive_twin, "train_fp.csv")
    sr, hop = 48000, 512
    for rid, rows in tp.groupby("recording_id"):
        y, _ = sf.read(os.path.join(exhaustive_twin, "train", f"{rid}.flac"))
        power = np.abs(librosa.stft(y, n_fft=2048, hop_length=hop)) ** 2
        freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
        times = librosa.frames_to_time(np.arange(power.shape[1]), sr=sr, hop_length=hop)
        boxes = pd.concat([rows, fp[fp.recording_id == rid]])
        for r in rows.itertuples():
            band = (freqs >= r.f_min) & (freqs <= r.f_max)
            during = (times >= r.t_min) & (times <= r.t_max)
            # "outside": frames away from every tp/fp call sharing this band (other bands don't count).
            quiet = np.ones_like(during)
            for o in boxes[(boxes.f_min < r.f_max) & (boxes.f_max > r.f_min)].itertuples():
                quiet &= (times < o.t_min - 0.1) | (times > o.t_max + 0.1)
            assert quiet.sum() > 10, (rid, r.species_id)
            assert power[band][:, during].mean() > 5 * power[band][:, quiet].mean(), (rid, r.species_id)


def test_label_modes(tiny_dataset, exhaustive_twin):
    """Same audio in both modes; partial keeps one tp row per (recording, species) of the 2-4 calls."""
    for sub in ("train", "test"):
        names = sorted(os.listdir(os.path.join(tiny_dataset, sub)))
        assert names == sorted(os.listdir(os.path.join(exhaustive_twin, sub)))
        assert filecmp.cmpfiles(os.path.join(tiny_dataset, sub), os.path.join(exhaustive_twin, sub), names,
                                shallow=False)[1:] == ([], [])
    for name in ("train_fp.csv", "test_truth.csv", "sample_submission.csv"):
        assert filecmp.cmp(os.path.join(tiny_dataset, name), os.path.join(exhaustive_twin, name), shallow=False)
    partial, every = _csv(tiny_dataset, "train_tp.csv"), _csv(exhaustive_twin, "train_tp.csv")
    per_partial = partial.groupby(["recording_id", "species_id"]).size()
    per_every = every.groupby(["recording_id", "species_id"]).size()
    assert (per_partial == 1).all()  # exactly one tp row per recording and species
    assert per_every.index.equals(per_partial.index)  # the same species are labelled in each recording
    assert per_every.between(2, 4).all() and len(every) > len(partial)  # more calls than rows
    # Every partial row is one of the exhaustive rows (one call of the species, not a new box).
    key = ["recording_id", "species_id", "t_min", "t_max"]
    assert len(partial.merge(every, on=key)) == len(partial)
    # Calls of one species never overlap, so the unlabelled ones are elsewhere in the recording.
    for _, calls in every.groupby(["recording_id", "species_id"]):
        calls = calls.sort_values("t_min")
        assert (calls.t_min.to_numpy()[1:] >= calls.t_max.to_numpy()[:-1]).all()
    # Look-alikes: an fp box lies in some species' band, on a sound of another shape.
    fp = _csv(tiny_dataset, "train_fp.csv")
    bands = {(round(c.f_min, 4), round(c.f_max, 4)) for c in species_calls()}
    assert len(fp) > 0 and all((r.f_min, r.f_max) in bands for r in fp.itertuples())
    with pytest.raises(UserError, match="label_mode"):
        write_demo_dataset(str(exhaustive_twin) + "_x", num_train=2, num_test=1, duration_s=3.0, label_mode="some")


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_demo_dataset(str(a), num_train=2, num_test=1, duration_s=3.0, seed=5)
    subprocess.run([sys.executable, "-m", "pipeline.demo_data", str(b), "--num_train", "2", "--num_test", "1",
                    "--duration", "3", "--seed", "5"], check=True, capture_output=True)
    files = sorted(os.path.relpath(p, a) for p in glob.glob(str(a / "**" / "*.*"), recursive=True))
    assert len(files) == 3 + 4  # FLACs + train_tp, train_fp, sample_submission, test_truth
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert (mismatch, errors) == ([], [])
    write_demo_dataset(str(tmp_path / "c"), num_train=2, num_test=1, duration_s=3.0, seed=6)
    assert open(a / "train_tp.csv").read() != open(tmp_path / "c" / "train_tp.csv").read()
    subprocess.run([sys.executable, "-m", "pipeline.demo_data", str(tmp_path / "e"), "--num_train", "2", "--num_test",
                    "1", "--duration", "3", "--seed", "5", "--label_mode", "exhaustive"],
                   check=True, capture_output=True)
    assert open(a / "train_tp.csv").read() != open(tmp_path / "e" / "train_tp.csv").read()
    assert filecmp.cmpfiles(a, tmp_path / "e", [f for f in files if f.endswith(".flac")], shallow=False)[1:] == ([], [])


def test_demo_refuses_a_rate_below_its_calls(tmp_path):
    """Calls reach ~15 kHz, so a rate whose Nyquist is below them is a clear error, not a traceback."""
    with pytest.raises(UserError, match="sample_rate"):
        write_demo_dataset(str(tmp_path / "d"), num_train=2, num_test=1, duration_s=3.0, sample_rate=0)
    with pytest.raises(UserError, match="sample_rate"):
        write_demo_dataset(str(tmp_path / "d"), num_train=2, num_test=1, duration_s=3.0, sample_rate=16000)
    assert not os.path.exists(tmp_path / "d")
