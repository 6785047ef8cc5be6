"""A harder synthetic dataset in the RFCX layout, to judge model quality on data that looks like the field.

The demo data (pipeline.demo_data) gives every species one fixed call over mild noise, so a model can
learn it by heart. This generator keeps the demo's 24 species bands, songtypes, call synthesis, ids and
writer, and adds what makes field recordings hard:

* call variants: each species has 6 variants that differ in syllable structure (count, shapes,
  sub-bands, lengths) and rhythm (even, accelerating, paired gaps), not only in pitch; variants 0-3
  occur only in train, variants 4-5 only in test, so the test asks for generalisation, not recall;
* distractors: non-target sounds (insect buzz, other birds, frog croaks) and look-alikes that sit in a
  target species' band with another species' structure; in train about half the look-alikes carry an
  fp box of the species they resemble, as RFCX's train_fp.csv does;
* partial labels: in train one tp box per labelled species (on one of its 1-4 calls), and some
  species call in a train recording without any box at all;
* class imbalance: species frequencies follow a Zipf-like law (which species is rare depends on the
  seed), so the rarest species occur in only a handful of recordings;
* SNR from -5 to 20 dB per call, measured in the call's band against the recording's noise bed;
* propagation: reverb (an exponentially decaying noise tail) and a distance low-pass on every call,
  a microphone high-pass on the whole recording;
* noise: the demo's pink + white background plus, per recording, any of rain (drops and hiss), wind
  (gusty low-frequency rumble) and engine (a harmonic drone that passes by).

Writes under OUT_DIR what pipeline.demo_data writes (train/*.flac, test/*.flac, train_tp.csv,
train_fp.csv, sample_submission.csv, test_truth.csv with every species calling in a test recording,
labelled or not) plus events.csv: one row per placed sound (kind, species, variant, labelled, box,
SNR), so scores can be broken down by variant, SNR or distractor. `make shards DATA_DIR=OUT_DIR`
shards it like any RFCX-layout dataset.

Usage:

    python -m benchmarks.realistic_data OUT_DIR [--num_train 240] [--num_test 96] [--duration 60]
        [--seed 0] [--sample_rate 48000]

Same arguments => byte-identical files. The plan (which species, variants, distractors and noises each
recording holds) is `plan_dataset(num_train, num_test, seed)`, without synthesising any audio.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy import signal

from benchmarks import field_acoustics
from core import checks
from core.errors import run_main
from pipeline.demo_data import (
    NUM_SPECIES,
    PARTIAL,
    SHAPES,
    add_dataset_flags,
    background,
    box_row,
    check_args,
    check_dataset_flags,
    place_call,
    recording_ids,
    species_calls,
    synthesize_call,
    write_csv,
    write_dataset,
)

NUM_VARIANTS = 6
TRAIN_VARIANTS = (0, 1, 2, 3)
TEST_VARIANTS = (4, 5)
# The variant catalogue is fixed (not drawn from the dataset seed), as demo_data's species are, so
# datasets of different seeds hold the same species and variants.
_CATALOGUE_SEED = 15
# Zipf exponent of species frequencies: about 1 gives a commonest/rarest ratio of ~20 over 24 species.
_ZIPF = 1.0
SNR_DB_RANGE = (-5.0, 20.0)
DISTRACTOR_KINDS = ("lookalike", "insect", "other_bird", "frog")
_DISTRACTOR_P = (0.45, 0.2, 0.2, 0.15)
NOISE_KINDS = tuple(field_acoustics.NOISES)
_NOISE_P = (0.3, 0.35, 0.2)
FP_ROW_P = 0.5  # share of train look-alikes that carry an fp box
EVENT_COLUMNS = ("recording_id", "kind", "species_id", "variant_id", "labelled", "t_min", "t_max", "f_min",
                 "f_max", "snr_db")


# ---- the call variants ----

@dataclasses.dataclass(frozen=True)
class Syllable:
    shape: str  # one of demo_data.SHAPES
    f_min: float  # Hz, inside the species band
    f_max: float
    seconds: float
    rate_hz: float  # trill / pulse rate
    gap_after: float  # silence before the next syllable, s


@dataclasses.dataclass(frozen=True)
class CallVariant:
    species_id: int
    variant_id: int
    syllables: tuple[Syllable, ...]

    @property
    def seconds(self) -> float:
        return sum(s.seconds + s.gap_after for s in self.syllables) - self.syllables[-1].gap_after


def _variant(rng: np.random.Generator, species_id: int, variant_id: int, f_min: float, f_max: float,
             signature: str) -> CallVariant:
    width = f_max - f_min
    n = int(rng.integers(1, 7))
    rhythm = ("even", "accelerating", "paired")[int(rng.integers(0, 3))]
    base_gap = float(rng.uniform(0.03, 0.25))
    syll_s = float(rng.uniform(0.06, 0.45)) if n <= 2 else float(rng.uniform(0.05, 0.2))
    # A motif of 1-2 shapes repeated along the call; the first syllable keeps the species' own shape
    # (demo_data's), so the variants of one species still share something besides the band.
    motif = [signature] + [SHAPES[int(rng.integers(0, len(SHAPES)))] for _ in range(int(rng.integers(0, 2)))]
    syllables = []
    for k in range(n):
        frac = float(rng.uniform(0.35, 0.8))  # each syllable uses part of the band
        lo = f_min + float(rng.uniform(0, 1 - frac)) * width
        seconds = syll_s * float(rng.uniform(0.8, 1.2))
        if rhythm == "even":
            gap = base_gap
        elif rhythm == "accelerating":
            gap = base_gap * (1.6 - 1.2 * k / max(1, n - 1))
        else:
            gap = base_gap * (0.4 if k % 2 == 0 else 2.0)
        syllables.append(Syllable(shape=motif[k % len(motif)], f_min=round(lo, 2), f_max=round(lo + frac * width, 2),
                                  seconds=round(seconds, 4), rate_hz=round(float(rng.uniform(3, 8)) / seconds, 3),
                                  gap_after=round(gap, 4)))
    return CallVariant(species_id, variant_id, tuple(syllables))


def call_variants() -> tuple[tuple[CallVariant, ...], ...]:
    """variants[species][variant]: NUM_VARIANTS per species, inside the demo's band of that species."""
    out = []
    for call in species_calls():
        rng = np.random.default_rng([_CATALOGUE_SEED, call.species_id])
        out.append(tuple(_variant(rng, call.species_id, v, call.f_min, call.f_max, call.shape)
                         for v in range(NUM_VARIANTS)))
    return tuple(out)


def synthesize_variant(variant: CallVariant, sample_rate: int, f_shift: float = 1.0) -> np.ndarray:
    """The variant's syllables and gaps as float32 [samples], peak about 1; f_shift scales its frequencies."""
    parts = []
    for s in variant.syllables:
        parts.append(synthesize_call(s.shape, s.f_min * f_shift, s.f_max * f_shift, s.seconds, s.rate_hz,
                                     sample_rate))
        parts.append(np.zeros(int(round(s.gap_after * sample_rate)), np.float32))
    return np.concatenate(parts[:-1])


# ---- the plan ----

@dataclasses.dataclass(frozen=True)
class Caller:
    """One target species calling in a recording: one variant, num_calls times."""

    species_id: int
    variant_id: int
    num_calls: int
    labelled: bool  # train: one of its calls has a tp box; False: no box at all (always False in test)


@dataclasses.dataclass(frozen=True)
class Distractor:
    kind: str  # one of DISTRACTOR_KINDS
    species_id: int  # the species a look-alike resembles; -1 for the others
    fp_row: bool


@dataclasses.dataclass(frozen=True)
class RealisticPlan:
    """What one recording holds. `species`, `recording_id` and `is_train` are what demo_data.write_dataset
    reads (test truth: every species calling, labelled or not)."""

    recording_id: str
    is_train: bool
    callers: tuple[Caller, ...]
    distractors: tuple[Distractor, ...]
    noises: tuple[str, ...]  # any of NOISE_KINDS, on top of the background

    @property
    def species(self) -> tuple[int, ...]:
        return tuple(c.species_id for c in self.callers)


def species_weights(seed: int) -> np.ndarray:
    """Probability of each species being drawn for a recording: Zipf over a seed-dependent ranking."""
    rank = np.random.default_rng([seed, 1]).permutation(NUM_SPECIES)
    w = 1.0 / (rank + 1.0) ** _ZIPF
    return w / w.sum()


def plan_dataset(num_train: int, num_test: int, seed: int) -> list[RealisticPlan]:
    """Train plans first, then test; cheap (no audio)."""
    rng = np.random.default_rng(seed)
    ids = recording_ids(rng, num_train + num_test)
    p = species_weights(seed)
    plans = []
    for i, rid in enumerate(ids):
        is_train = i < num_train
        num_labelled = 1 + int(rng.integers(0, 2)) if is_train else 0
        num_unlabelled = int(rng.choice(3, p=(0.5, 0.35, 0.15))) if is_train else 1 + int(rng.integers(0, 3))
        species = [int(s) for s in rng.choice(NUM_SPECIES, size=num_labelled + num_unlabelled, replace=False, p=p)]
        # Every species gets a labelled recording once (if there are enough), or a rare one could
        # never be learnt; beyond that the Zipf draw rules.
        if is_train and i < NUM_SPECIES:
            species = [i] + [s for s in species if s != i][: len(species) - 1]
        callers = []
        for k, s in enumerate(species):
            variants = TRAIN_VARIANTS if is_train else TEST_VARIANTS
            callers.append(Caller(s, int(variants[int(rng.integers(0, len(variants)))]), 1 + int(rng.integers(0, 4)),
                                  is_train and k < num_labelled))
        distractors = []
        for _ in range(int(rng.integers(0, 4))):
            kind = DISTRACTOR_KINDS[int(rng.choice(len(DISTRACTOR_KINDS), p=_DISTRACTOR_P))]
            look = int(rng.integers(0, NUM_SPECIES)) if kind == "lookalike" else -1
            distractors.append(Distractor(kind, look, is_train and look >= 0 and bool(rng.random() < FP_ROW_P)))
        noises = tuple(k for k, q in zip(NOISE_KINDS, _NOISE_P) if rng.random() < q)
        plans.append(RealisticPlan(rid, is_train, tuple(callers), tuple(distractors), noises))
    return plans


# ---- one recording ----

def _distractor_sound(d: Distractor, variants, sample_rate: int, duration_s: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """(sound, f_min, f_max of the band it occupies)."""
    calls = species_calls()
    if d.kind == "lookalike":
        # Another species' structure moved into the resembled species' band.
        other = (d.species_id + 1 + int(rng.integers(0, NUM_SPECIES - 1))) % NUM_SPECIES
        v = variants[other][int(rng.integers(0, NUM_VARIANTS))]
        own, theirs = calls[d.species_id], calls[other]
        shift = ((own.f_min + own.f_max) / 2) / ((theirs.f_min + theirs.f_max) / 2)
        return synthesize_variant(v, sample_rate, shift), own.f_min, own.f_max
    if d.kind == "insect":
        # A long, fast amplitude-modulated buzz, as cicadas and crickets make.
        seconds = min(float(rng.uniform(2, 8)), duration_s / 2)
        f = float(rng.uniform(3000, min(12000, 0.4 * sample_rate)))
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        y = np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(20, 80) * t)) ** 2
        return y.astype(np.float32), f * 0.97, f * 1.03
    if d.kind == "frog":
        # Low harmonic croaks, a few in a row.
        f0 = float(rng.uniform(150, 600))
        croak = sum(synthesize_call("pulses", f0 * h, f0 * h, 0.25, float(rng.uniform(20, 60)), sample_rate) / h
                    for h in (1, 2, 3))
        gap = np.zeros(int(rng.uniform(0.1, 0.4) * sample_rate), np.float32)
        return np.concatenate([croak, gap] * int(rng.integers(2, 5))).astype(np.float32), f0, 3 * f0
    # other_bird: a random call anywhere in the target range, not tied to any species' band.
    centre = float(np.exp(rng.uniform(np.log(500), np.log(10000))))
    shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
    f_min, f_max = centre * 0.85, centre * 1.15
    return synthesize_call(shape, f_min, f_max, float(rng.uniform(0.3, 1.5)), float(rng.uniform(4, 15)),
                           sample_rate), f_min, f_max


def synthesize_recording(plan: RealisticPlan, duration_s: float, sample_rate: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, list[dict], list[dict], list[dict]]:
    """Audio float32 [n] plus its tp rows, fp rows and events (one per sound placed)."""
    calls, variants = species_calls(), call_variants()
    n = int(round(duration_s * sample_rate))
    bed = background(n, rng).astype(np.float64)
    base = float(np.std(bed))
    for kind in plan.noises:
        make = field_acoustics.NOISES[kind]
        # Relative to the background: from barely there to dominating it.
        bed += make(n, sample_rate, rng) * base * float(rng.uniform(0.5, 4.0))
    y = bed.copy()
    tp, fp, events = [], [], []

    def put(sound: np.ndarray, t0: float, f_min: float, f_max: float) -> tuple[int, float]:
        start = int(round(t0 * sample_rate))
        snr = float(rng.uniform(*SNR_DB_RANGE))
        wet = field_acoustics.propagate(sound, f_max, sample_rate, rng)
        seg = bed[start:start + len(sound)]
        # On what reaches the recorder (reverb and low-pass included) over the box's span.
        gain = field_acoustics.gain_for_snr(wet[:len(seg)], seg, sample_rate, f_min, f_max, snr)
        place_call(y, wet, start, gain)
        return start, snr

    for c in plan.callers:
        call, variant = calls[c.species_id], variants[c.species_id][c.variant_id]
        wave = synthesize_variant(variant, sample_rate)
        seconds = len(wave) / sample_rate
        labelled = int(rng.integers(0, c.num_calls))
        stretch = duration_s / c.num_calls
        for k in range(c.num_calls):
            t0 = k * stretch + float(rng.uniform(0, max(0.0, stretch - seconds)))
            w = wave[: max(1, int((duration_s - t0) * sample_rate) - 1)]  # a call may run off the end
            start, snr = put(w, t0, call.f_min, call.f_max)
            t_min, t_max = start / sample_rate, min(duration_s, (start + len(w)) / sample_rate)
            has_row = c.labelled and k == labelled
            if has_row:
                tp.append(box_row(plan.recording_id, call, t_min, t_max, call.f_min, call.f_max))
            events.append(_event(plan.recording_id, "call", c.species_id, c.variant_id, has_row, t_min, t_max,
                                 call.f_min, call.f_max, snr))
    for d in plan.distractors:
        sound, f_min, f_max = _distractor_sound(d, variants, sample_rate, duration_s, rng)
        sound = sound[: int(duration_s * sample_rate) - 1]
        t0 = float(rng.uniform(0, max(0.0, duration_s - len(sound) / sample_rate)))
        start, snr = put(sound, t0, f_min, f_max)
        t_min, t_max = start / sample_rate, min(duration_s, (start + len(sound)) / sample_rate)
        if d.fp_row:
            look = calls[d.species_id]
            fp.append(box_row(plan.recording_id, look, t_min, t_max, look.f_min, look.f_max))
        events.append(_event(plan.recording_id, d.kind, d.species_id, -1, d.fp_row, t_min, t_max, f_min, f_max, snr))
    # The recorder's high-pass (wind screens and small microphones roll off the lowest octaves).
    y = signal.sosfilt(signal.butter(2, float(rng.uniform(40, 150)), "highpass", fs=sample_rate, output="sos"), y)
    y *= float(rng.uniform(0.5, 1.0)) / max(float(np.max(np.abs(y))), 1e-9)  # recorder gain; no clipping
    key = lambda r: (r["t_min"], r["species_id"])  # noqa: E731
    return y.astype(np.float32), sorted(tp, key=key), sorted(fp, key=key), events


def _event(rid, kind, species_id, variant_id, labelled, t_min, t_max, f_min, f_max, snr) -> dict:
    return {"recording_id": rid, "kind": kind, "species_id": species_id, "variant_id": variant_id,
            "labelled": int(labelled), "t_min": round(t_min, 4), "t_max": round(t_max, 4),
            "f_min": round(f_min, 2), "f_max": round(f_max, 2), "snr_db": round(snr, 2)}


def write_realistic_dataset(out_dir: str, num_train: int = 240, num_test: int = 96, duration_s: float = 60.0,
                            seed: int = 0, sample_rate: int = 48000) -> dict:
    """Writes the dataset into `out_dir` (created) and returns a summary of what it wrote."""
    check_args(num_train, num_test, duration_s, sample_rate, PARTIAL)
    plans = plan_dataset(num_train, num_test, seed)
    for sub in ("train", "test"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    rows, events = [], []
    for i, plan in enumerate(plans):
        # One stream per (seed, index), as demo_data's, so a recording does not depend on the others.
        y, tp, fp, ev = synthesize_recording(plan, duration_s, sample_rate, np.random.default_rng([seed, 15, i]))
        sf.write(os.path.join(out_dir, "train" if plan.is_train else "test", f"{plan.recording_id}.flac"),
                 y, sample_rate, subtype="PCM_16", format="FLAC")
        rows.append((tp, fp))
        events += ev
    summary = write_dataset(out_dir, plans, rows)
    write_csv(os.path.join(out_dir, "events.csv"), EVENT_COLUMNS, events)
    return {"out_dir": out_dir, **summary, "events": len(events), "duration_s": duration_s,
            "sample_rate": sample_rate}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = checks.ArgumentParser(prog="python -m benchmarks.realistic_data",
                                   description=__doc__.split("\n\n")[0])
    add_dataset_flags(parser, num_train=240, num_test=96)
    args = parser.parse_args(argv)
    check_dataset_flags(args)
    summary = write_realistic_dataset(args.out_dir, args.num_train, args.num_test, args.duration, args.seed,
                                      args.sample_rate)
    print(", ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


if __name__ == "__main__":
    run_main(main)
