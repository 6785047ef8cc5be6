"""benchmarks.realistic_data: held-out variants, SNR, distractors, partial labels, imbalance, determinism,
and a dataset the real sharding job takes."""
from __future__ import annotations

import collections
import filecmp
import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from benchmarks import field_acoustics
from benchmarks import realistic_data as rd
from pipeline import labels, shards

SR = 32000  # the lowest rate the generator accepts: fast, and the highest band still below Nyquist
NUM_TRAIN, NUM_TEST, DURATION_S = 8, 4, 5.0


def _csv(d, name) -> pd.DataFrame:
    return pd.read_csv(os.path.join(d, name), dtype={"recording_id": str})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("realistic"))
    rd.write_realistic_dataset(out, NUM_TRAIN, NUM_TEST, DURATION_S, seed=0, sample_rate=SR)
    return out


def test_variants_differ_in_structure_and_test_ones_never_occur_in_train():
    variants = rd.call_variants()
    assert len(variants) == rd.NUM_SPECIES and all(len(v) == rd.NUM_VARIANTS for v in variants)
    for per_species in variants:
        # Structure, not pitch: syllable counts or shape sequences or gaps differ between variants.
        structures = {(len(v.syllables), tuple(s.shape for s in v.syllables),
                       tuple(round(s.gap_after, 2) for s in v.syllables)) for v in per_species}
        assert len(structures) == rd.NUM_VARIANTS
        assert len({len(v.syllables) for v in per_species}) >= 2
    plans = rd.plan_dataset(60, 40, seed=3)
    train = {(c.species_id, c.variant_id) for p in plans if p.is_train for c in p.callers}
    test = {(c.species_id, c.variant_id) for p in plans if not p.is_train for c in p.callers}
    assert test and train and not (train & test)
    assert {v for _, v in train} <= set(rd.TRAIN_VARIANTS) and {v for _, v in test} <= set(rd.TEST_VARIANTS)


def test_events_use_the_plans_variants(tiny):
    plans = {p.recording_id: p for p in rd.plan_dataset(NUM_TRAIN, NUM_TEST, 0)}
    ev = _csv(tiny, "events.csv")
    calls = ev[ev.kind == "call"]
    for rid, rows in calls.groupby("recording_id"):
        planned = {(c.species_id, c.variant_id) for c in plans[rid].callers}
        assert set(zip(rows.species_id, rows.variant_id)) == planned
        test_ids = set(_csv(tiny, "test_truth.csv").recording_id)
        allowed = rd.TEST_VARIANTS if rid in test_ids else rd.TRAIN_VARIANTS
        assert set(rows.variant_id) <= set(allowed)


@pytest.mark.parametrize("snr_db", [-5.0, 10.0])
def test_requested_snr_is_hit_in_the_band(snr_db):
    rng = np.random.default_rng(1)
    n = 2 * SR
    noise = rd.background(n, rng) + 0.05 * field_acoustics.rain(n, SR, rng)
    species = rd.species_calls()[9]
    call = rd.synthesize_variant(rd.call_variants()[9][0], SR)
    call = field_acoustics.propagate(call, species.f_max, SR, rng)[: len(call)]
    seg = noise[SR // 2: SR // 2 + len(call)]
    gain = field_acoustics.gain_for_snr(call, seg, SR, species.f_min, species.f_max, snr_db)
    # Measured independently: a Butterworth band-pass instead of the generator's FFT mask.
    sos = signal.butter(8, [species.f_min, species.f_max], "bandpass", fs=SR, output="sos")
    p_call = np.mean(signal.sosfiltfilt(sos, gain * call.astype(np.float64)) ** 2)
    p_noise = np.mean(signal.sosfiltfilt(sos, seg.astype(np.float64)) ** 2)
    assert 10 * np.log10(p_call / p_noise) == pytest.approx(snr_db, abs=1.0)


def test_snr_range_reaches_minus_five_db(tiny):
    snr = _csv(tiny, "events.csv").snr_db
    assert snr.min() < -3.0 and snr.min() >= rd.SNR_DB_RANGE[0] and snr.max() > 10.0


def test_distractors_exist_and_some_carry_fp_rows(tiny):
    ev = _csv(tiny, "events.csv")
    distractors = ev[ev.kind != "call"]
    assert len(distractors) >= 3 and len(set(distractors.kind)) >= 2
    fp = _csv(tiny, "train_fp.csv")
    looks = distractors[(distractors.kind == "lookalike") & (distractors.labelled == 1)]
    assert len(fp) == len(looks) >= 1
    # Each fp row sits on a look-alike placed in that recording, in the resembled species' band.
    for row in fp.itertuples():
        match = looks[(looks.recording_id == row.recording_id) & (looks.species_id == row.species_id)
                      & np.isclose(looks.t_min, row.t_min)]
        assert len(match) == 1
    # And some distractors have no row at all (non-target sounds, test look-alikes).
    assert (distractors.labelled == 0).sum() >= 1


def test_some_train_species_call_without_a_box(tiny):
    tp, ev = _csv(tiny, "train_tp.csv"), _csv(tiny, "events.csv")
    train_ids = set(tp.recording_id)
    boxed = set(zip(tp.recording_id, tp.species_id))
    calling = set(zip(ev[(ev.kind == "call") & ev.recording_id.isin(train_ids)].recording_id,
                      ev[(ev.kind == "call") & ev.recording_id.isin(train_ids)].species_id))
    assert boxed < calling  # every boxed species calls; some calling species have no box
    # Within a boxed species only one call has a row (RFCX's partial labels).
    assert tp.groupby(["recording_id", "species_id"]).size().max() == 1
    assert len(ev[(ev.kind == "call") & ev.recording_id.isin(train_ids)]) > len(tp)


def test_class_imbalance():
    plans = rd.plan_dataset(240, 0, seed=0)
    per_species = collections.Counter(s for p in plans for s in p.species)
    counts = [per_species.get(s, 0) for s in range(rd.NUM_SPECIES)]
    assert min(counts) >= 1  # every species can still be learnt from somewhere
    assert min(counts) <= 10 and max(counts) >= 8 * min(counts)
    labelled = collections.Counter(c.species_id for p in plans for c in p.callers if c.labelled)
    assert all(labelled[s] >= 1 for s in range(rd.NUM_SPECIES))


def test_test_truth_lists_every_calling_species(tiny):
    truth = _csv(tiny, "test_truth.csv").set_index("recording_id")
    ev = _csv(tiny, "events.csv")
    for rid, row in truth.iterrows():
        calling = set(ev[(ev.recording_id == rid) & (ev.kind == "call")].species_id)
        assert {int(c[1:]) for c in truth.columns if row[c] == 1} == calling


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again, other = str(tmp_path / "again"), str(tmp_path / "other")
    rd.write_realistic_dataset(again, NUM_TRAIN, NUM_TEST, DURATION_S, seed=0, sample_rate=SR)
    rd.write_realistic_dataset(other, NUM_TRAIN, NUM_TEST, DURATION_S, seed=1, sample_rate=SR)
    files = sorted(os.path.relpath(os.path.join(r, f), tiny) for r, _, fs in os.walk(tiny) for f in fs)
    assert len(files) == NUM_TRAIN + NUM_TEST + 5
    _, mismatch, errors = filecmp.cmpfiles(tiny, again, files, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(os.path.join(tiny, "train_tp.csv"), os.path.join(other, "train_tp.csv"), shallow=False)


def test_the_sharding_job_takes_it(tiny, tmp_path):
    for name in ("train_tp.csv", "train_fp.csv"):
        table = labels.read_csv(os.path.join(tiny, name), required=True)
        assert table is not None
    out = str(tmp_path / "shards")
    shards.run(["--data_dir", tiny, "--output_dir", out, "--num_folds", "2", "--slice_seconds", "2",
                "--runner", "DirectRunner"])
    counts = json.load(open(os.path.join(out, "manifest.json")))["counts"]
    tp, fp = _csv(tiny, "train_tp.csv"), _csv(tiny, "train_fp.csv")
    assert counts["tp_rows"] == len(tp) and counts["fp_rows"] == len(fp)
    assert counts["train_examples_per_kind"]["tp"] + counts["tp_rejected"] == len(tp)
    assert counts["train_examples_per_kind"]["tp"] == len(tp)  # every box fits a slice
    assert counts["train_examples_per_kind"]["fp"] + counts["fp_rejected"] == len(fp)
    assert counts["test_files"] == counts["test_examples"] == NUM_TEST
    assert sum(counts["train_examples_per_fold"].values()) == counts["train_examples"]
    assert counts["recordings_resampled"] == NUM_TRAIN + NUM_TEST  # 32 kHz in, 48 kHz out
