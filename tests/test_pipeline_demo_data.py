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

from pipeline.demo_data import NUM_SPECIES, species_calls, write_demo_dataset
from pipeline.errors import UserError

COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]


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


def test_tp_boxes_hold_the_call(tiny_dataset):
    """Energy inside each tp box clearly exceeds the same band outside the box's time span."""
    tp = pd.read_csv(os.path.join(tiny_dataset, "train_tp.csv"), dtype={"recording_id": str})
    fp = pd.read_csv(os.path.join(tiny_dataset, "train_fp.csv"), dtype={"recording_id": str})
    sr, hop = 48000, 512
    for rid, rows in tp.groupby("recording_id"):
        y, _ = sf.read(os.path.join(tiny_dataset, "train", f"{rid}.flac"))
        power = np.abs(librosa.stft(y, n_fft=2048, hop_length=hop)) ** 2
        freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
        times = librosa.frames_to_time(np.arange(power.shape[1]), sr=sr, hop_length=hop)
        for r in rows.itertuples():
            band = (freqs >= r.f_min) & (freqs <= r.f_max)
            during = (times >= r.t_min) & (times <= r.t_max)
            # "outside": frames away from every tp/fp call of this recording, so other calls don't count.
            quiet = np.ones_like(during)
            for o in pd.concat([rows, fp[fp.recording_id == rid]]).itertuples():
                quiet &= (times < o.t_min - 0.1) | (times > o.t_max + 0.1)
            assert power[band][:, during].mean() > 5 * power[band][:, quiet].mean(), (rid, r.species_id)


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


def test_demo_refuses_a_rate_below_its_calls(tmp_path):
    """Calls reach ~15 kHz, so a rate whose Nyquist is below them is a clear error, not a traceback."""
    with pytest.raises(UserError, match="sample_rate"):
        write_demo_dataset(str(tmp_path / "d"), num_train=2, num_test=1, duration_s=3.0, sample_rate=0)
    with pytest.raises(UserError, match="sample_rate"):
        write_demo_dataset(str(tmp_path / "d"), num_train=2, num_test=1, duration_s=3.0, sample_rate=16000)
    assert not os.path.exists(tmp_path / "d")
