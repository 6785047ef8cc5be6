"""Deterministic synthetic dataset in the RFCX layout, so the whole project runs without Kaggle data.

Writes, under OUT_DIR:

    train/<id>.flac, test/<id>.flac   mono 16-bit FLAC (default 60 s at 48 kHz)
    train_tp.csv, train_fp.csv         recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max
    sample_submission.csv              recording_id,s0,...,s23 (zeros)
    test_truth.csv                     same header, 1 for each species calling in the test recording

Each of the 24 species has its own call: a frequency band inside 84..15056 Hz, a shape (up chirp,
down chirp, steady tone, trill, pulse train) and a rhythm (call length, trill/pulse rate), laid over
pink-ish plus broadband background noise. Every recording holds one to three species, each calling
2-4 times, and 0-2 "look-alike" sounds: another species' band with another shape, listed in
train_fp.csv as that species' false positives. Ids are 9 hex digits like RFCX's.

Labels (`--label_mode`):
* `partial` (default), as RFCX's: one tp row per species per recording, on one of its calls; its
  other calls in the recording have no row.
* `exhaustive`: a tp row on every call.
The audio is the same in both modes (partial rows are a subset of exhaustive ones); test_truth.csv
is exhaustive in both (every species calling in the test recording).

Usage:

    python -m pipeline.demo_data OUT_DIR [--num_train 48] [--num_test 64] [--duration 60] [--seed 0]
        [--label_mode partial|exhaustive]

Same arguments => byte-identical files.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
from typing import Sequence

import colorednoise
import numpy as np
import soundfile as sf

from core import checks
from core.errors import UserError, run_main

NUM_SPECIES = 24
CSV_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max")
SHAPES = ("up_chirp", "down_chirp", "tone", "trill", "pulses")
# Band centres span the seed's mel range (84..15056 Hz) with margin for the band width.
_LOWEST_CENTRE_HZ, _HIGHEST_CENTRE_HZ = 350.0, 12500.0
_RELATIVE_BANDWIDTH = 0.22
# Label modes: which calls of a species get a tp row.
PARTIAL = "partial"  # one per species per recording, as in RFCX
EXHAUSTIVE = "exhaustive"  # every call
LABEL_MODES = (PARTIAL, EXHAUSTIVE)


@dataclasses.dataclass(frozen=True)
class SpeciesCall:
    """The recognisable call of one species."""

    species_id: int
    shape: str
    f_min: float  # Hz
    f_max: float  # Hz
    call_seconds: float
    rate_hz: float  # trill modulation / pulse repetition rate
    songtype_id: int


def species_calls() -> tuple[SpeciesCall, ...]:
    """The 24 species' calls; fixed (independent of the seed) so train and test share them."""
    centres = np.geomspace(_LOWEST_CENTRE_HZ, _HIGHEST_CENTRE_HZ, NUM_SPECIES)
    # Interleave centres so species with neighbouring ids differ in band as well as shape.
    order = np.concatenate([np.arange(0, NUM_SPECIES, 2), np.arange(1, NUM_SPECIES, 2)])
    calls = []
    for s in range(NUM_SPECIES):
        centre = float(centres[order[s]])
        half = centre * _RELATIVE_BANDWIDTH / 2
        calls.append(SpeciesCall(
            species_id=s,
            shape=SHAPES[s % len(SHAPES)],
            f_min=round(centre - half, 4),
            f_max=round(centre + half, 4),
            call_seconds=0.8 + 0.15 * (s % 11),
            rate_hz=4.0 + 1.5 * (s % 7),
            # RFCX uses songtype 4 for a second song of a few species.
            songtype_id=4 if s % 8 == 7 else 1,
        ))
    return tuple(calls)


def synthesize_call(shape: str, f_min: float, f_max: float, seconds: float, rate_hz: float,
                    sample_rate: int) -> np.ndarray:
    """One call as float32 [round(seconds * sample_rate)] with peak about 1, faded in and out."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    centre, width = (f_min + f_max) / 2, f_max - f_min
    if shape == "up_chirp":
        phase = 2 * np.pi * (f_min * t + width * t**2 / (2 * seconds))
    elif shape == "down_chirp":
        phase = 2 * np.pi * (f_max * t - width * t**2 / (2 * seconds))
    elif shape == "trill":
        # Frequency centre + width/2 * sin(2 pi rate t); the phase is its integral.
        phase = 2 * np.pi * centre * t - (width / 2) / rate_hz * np.cos(2 * np.pi * rate_hz * t)
    elif shape in ("tone", "pulses"):
        phase = 2 * np.pi * centre * t
    else:
        raise ValueError(f"unknown call shape {shape!r}")
    y = np.sin(phase)
    if shape == "pulses":
        y *= (np.mod(t * rate_hz, 1.0) < 0.4)  # 40 % duty cycle
    fade = min(n // 2, int(0.01 * sample_rate))
    if fade:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
        y[:fade] *= ramp
        y[n - fade:] *= ramp[::-1]
    return y.astype(np.float32)


def background(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish (1/f) noise plus some broadband white noise, float32 [num_samples]."""
    pink = colorednoise.powerlaw_psd_gaussian(1.0, num_samples, random_state=rng)
    pink *= rng.uniform(0.015, 0.04) / (np.std(pink) + 1e-12)
    white = rng.standard_normal(num_samples) * rng.uniform(0.003, 0.01)
    return (pink + white).astype(np.float32)


def place_call(y: np.ndarray, call: np.ndarray, start: int, gain: float) -> None:
    end = min(len(y), start + len(call))
    y[start:end] += gain * call[: end - start]


def recording_ids(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct RFCX-style ids (9 hex digits) drawn from `rng`."""
    ids: list[str] = []
    while len(ids) < count:
        rid = f"{int(rng.integers(0, 16**9)):09x}"
        if rid not in ids:
            ids.append(rid)
    return ids


def box_row(rid: str, call: SpeciesCall, t0: float, t1: float, f_min: float, f_max: float) -> dict:
    return {"recording_id": rid, "species_id": call.species_id, "songtype_id": call.songtype_id,
            "t_min": round(t0, 4), "f_min": f_min, "t_max": round(t1, 4), "f_max": f_max}


@dataclasses.dataclass(frozen=True)
class RecordingPlan:
    """What one recording holds: the species calling in it and how many look-alike sounds."""

    recording_id: str
    species: tuple[int, ...]  # every one calls 2-4 times (one call is labelled in partial mode)
    num_lookalikes: int  # each one an fp row (train) or just a sound (test)
    is_train: bool


def _synthesize_recording(plan: RecordingPlan, duration_s: float, sample_rate: int, rng: np.random.Generator,
                          label_mode: str) -> tuple[np.ndarray, list[dict], list[dict]]:
    """Audio float32 [n] plus its tp and fp box rows.

    The audio and every random draw are the same in both label modes; only which calls get a tp row
    differs, so a partial dataset is an exhaustive one with rows removed.
    """
    calls = species_calls()
    n = int(round(duration_s * sample_rate))
    y = background(n, rng)
    tp, fp = [], []
    for s in plan.species:
        call = calls[s]
        seconds = min(call.call_seconds, duration_s / 4)
        num_calls = 1 + int(rng.integers(1, 4))  # the labelled call and 1-3 more, as RFCX's species call again
        labelled = int(rng.integers(0, num_calls))
        # Each call in its own equal stretch of the recording, so calls of one species never overlap:
        # the unlabelled ones are "elsewhere" in the recording, not on top of the labelled one.
        stretch = duration_s / num_calls
        for k in range(num_calls):
            t0 = k * stretch + float(rng.uniform(0, stretch - seconds))
            wave = synthesize_call(call.shape, call.f_min, call.f_max, seconds, call.rate_hz, sample_rate)
            start = int(round(t0 * sample_rate))
            place_call(y, wave, start, float(rng.uniform(0.12, 0.3)))
            if label_mode == EXHAUSTIVE or k == labelled:
                tp.append(box_row(plan.recording_id, call, start / sample_rate,
                                   (start + len(wave)) / sample_rate, call.f_min, call.f_max))
    for _ in range(plan.num_lookalikes):
        # A look-alike: another species' band with a different shape, as a detector would confuse it.
        look = calls[int(rng.integers(0, NUM_SPECIES))]
        shape = SHAPES[(SHAPES.index(look.shape) + 2) % len(SHAPES)]
        seconds = min(1.0, duration_s / 4)
        t0 = float(rng.uniform(0, duration_s - seconds))
        wave = synthesize_call(shape, look.f_min, look.f_max, seconds, look.rate_hz * 1.7, sample_rate)
        start = int(round(t0 * sample_rate))
        place_call(y, wave, start, float(rng.uniform(0.1, 0.2)))
        fp.append(box_row(plan.recording_id, look, start / sample_rate, (start + len(wave)) / sample_rate,
                           look.f_min, look.f_max))
    peak = float(np.max(np.abs(y)))
    if peak > 0.95:  # keep clear of int16 clipping
        y *= 0.95 / peak
    # Rows in time order, as an annotator would list them (and independent of the call loop's order).
    key = lambda r: (r["t_min"], r["species_id"])  # noqa: E731
    return y, sorted(tp, key=key), sorted(fp, key=key)


def write_csv(path: str, header: Sequence[str], rows: Sequence[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header))
        w.writeheader()
        w.writerows(rows)


def write_recording(out_dir: str, plan: RecordingPlan, index: int, duration_s: float, seed: int,
                    sample_rate: int, label_mode: str) -> tuple[list[dict], list[dict]]:
    """Synthesizes one recording into OUT/train or OUT/test and returns its (tp rows, fp rows).

    Its random stream depends on (seed, index) only, so recordings can be written in any order or in
    parallel (the benchmark does) and still give the same bytes.
    """
    rng = np.random.default_rng([seed, index])
    y, tp, fp = _synthesize_recording(plan, duration_s, sample_rate, rng, label_mode)
    path = os.path.join(out_dir, "train" if plan.is_train else "test", f"{plan.recording_id}.flac")
    sf.write(path, y, sample_rate, subtype="PCM_16", format="FLAC")
    return tp, fp


def check_args(num_train: int, num_test: int, duration_s: float, sample_rate: int, label_mode: str) -> None:
    """Raises UserError for arguments the generator cannot honour."""
    if num_train < 1 or num_test < 0:
        raise UserError(f"--num_train must be >= 1 and --num_test >= 0, got {num_train} and {num_test}")
    if duration_s < 2.0:
        raise UserError(f"--duration must be at least 2 seconds, got {duration_s}")
    if sample_rate < 32000:  # the calls span up to ~15 kHz: Nyquist must lie above them
        raise UserError(f"--sample_rate must be at least 32000 Hz, got {sample_rate}")
    if label_mode not in LABEL_MODES:
        raise UserError(f"--label_mode must be one of {', '.join(LABEL_MODES)}, got {label_mode!r}")


def plan_recordings(num_train: int, num_test: int, seed: int) -> list[RecordingPlan]:
    """The default demo's recordings: train first (every species as a primary in turn), then test."""
    rng = np.random.default_rng(seed)
    ids = recording_ids(rng, num_train + num_test)
    plans = []
    for i, rid in enumerate(ids):
        is_train = i < num_train
        # Round-robin primary species so every species occurs in train; 0-2 random extra species.
        primary = i % NUM_SPECIES if is_train else int(rng.integers(0, NUM_SPECIES))
        extra = rng.choice(NUM_SPECIES, size=int(rng.integers(0, 3)), replace=False)
        species = (primary,) + tuple(int(s) for s in extra if s != primary)
        plans.append(RecordingPlan(rid, species, int(rng.integers(0, 3)), is_train))
    return plans


def write_dataset(out_dir: str, plans: Sequence[RecordingPlan], rows: Sequence[tuple[list[dict], list[dict]]]) -> dict:
    """The CSVs of a dataset whose FLACs `write_recording` wrote; rows[i] = (tp, fp) of plans[i]."""
    tp_rows, fp_rows, truth_rows = [], [], []
    for plan, (tp, fp) in zip(plans, rows):
        if plan.is_train:
            tp_rows += tp
            fp_rows += fp
        else:
            # The truth is exhaustive in both label modes: every species calling in the recording.
            truth_rows.append({"recording_id": plan.recording_id,
                               **{f"s{s}": int(s in plan.species) for s in range(NUM_SPECIES)}})
    sub_header = ["recording_id"] + [f"s{s}" for s in range(NUM_SPECIES)]
    write_csv(os.path.join(out_dir, "train_tp.csv"), CSV_COLUMNS, tp_rows)
    write_csv(os.path.join(out_dir, "train_fp.csv"), CSV_COLUMNS, fp_rows)
    write_csv(os.path.join(out_dir, "test_truth.csv"), sub_header, truth_rows)
    write_csv(os.path.join(out_dir, "sample_submission.csv"), sub_header,
               [{"recording_id": r["recording_id"], **{f"s{s}": 0 for s in range(NUM_SPECIES)}}
                for r in truth_rows])
    return {"train_recordings": sum(p.is_train for p in plans), "test_recordings": len(truth_rows),
            "tp_rows": len(tp_rows), "fp_rows": len(fp_rows)}


def write_demo_dataset(out_dir: str, num_train: int = 48, num_test: int = 64, duration_s: float = 60.0,
                       seed: int = 0, sample_rate: int = 48000, label_mode: str = PARTIAL) -> dict:
    """Writes the dataset into `out_dir` (created) and returns a summary of what it wrote."""
    check_args(num_train, num_test, duration_s, sample_rate, label_mode)
    plans = plan_recordings(num_train, num_test, seed)
    for sub in ("train", "test"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    rows = [write_recording(out_dir, plan, i, duration_s, seed, sample_rate, label_mode)
            for i, plan in enumerate(plans)]
    summary = write_dataset(out_dir, plans, rows)
    return {"out_dir": out_dir, **summary, "duration_s": duration_s, "sample_rate": sample_rate,
            "label_mode": label_mode}


def add_dataset_flags(parser: argparse.ArgumentParser, num_train: int, num_test: int) -> None:
    """The flags every dataset generator takes (this one and benchmarks.realistic_data)."""
    parser.add_argument("out_dir")
    parser.add_argument("--num_train", type=int, default=num_train)
    parser.add_argument("--num_test", type=int, default=num_test)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per recording")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample_rate", type=int, default=48000)


def check_dataset_flags(args: argparse.Namespace) -> None:
    """One `error:` line for a bad value of add_dataset_flags' flags, before anything is written."""
    checks.output_dir("out_dir", args.out_dir)
    checks.number("--duration", args.duration, 2.0, 24 * 3600.0)
    checks.number("--seed", args.seed, 0)
    checks.number("--sample_rate", args.sample_rate, high=768000)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = checks.ArgumentParser(prog="python -m pipeline.demo_data", description=__doc__.split("\n\n")[0])
    add_dataset_flags(parser, num_train=48, num_test=64)
    parser.add_argument("--label_mode", default=PARTIAL,
                        help=f"{PARTIAL} (default, as RFCX: one tp box per species per recording, its other "
                             f"calls unlabelled) or {EXHAUSTIVE} (a tp box on every call)")
    args = parser.parse_args(argv)
    check_dataset_flags(args)
    summary = write_demo_dataset(args.out_dir, args.num_train, args.num_test, args.duration, args.seed,
                                 args.sample_rate, args.label_mode)
    print(", ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


if __name__ == "__main__":
    run_main(main)
