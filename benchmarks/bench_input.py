"""Throughput of the training input pipeline against the seed notebook's per-sample generator.

    python -m benchmarks.bench_input [--data_dir data/demo] [--shards_dir data/shards/demo]
        [--batch_size 32] [--batches 8] [--seed_samples 24] [--repeats 3] [--out bench_out]

Times, in one run on the same data and machine (samples/s):

* seed: a re-implementation of the seed's DataGenerator.__data_generation for one training sample:
  librosa.load of the whole FLAC (sr=None), the seed's crop around the event, the seed's chain
  (its GaussianNoiseSNR / PinkNoiseSNR / PitchShift(librosa) / TimeShift / VolumeControl code, on
  numpy's global generator as in the seed), librosa melspectrogram -> amplitude_to_db -> min-max,
  stored into a float64 batch array. One process, one sample after another, as the seed's
  keras Sequence ran it. Left out: the skimage resize to (128, 1876) (scikit-image is not a
  dependency), so the seed is timed slightly faster than it was.
* pipeline_augmented: trainer.data.train_dataset with the default config (full augmentation chain:
  noise, time shift and volume through tf.numpy_function, the pitch shift as warped mel filter
  banks; log-mel in TF, batching, prefetch), after --warmup batches.
* pipeline_ceiling: the same pipeline with augmentation disabled (its upper bound).
* pipeline_augmented_fresh_noise: the default chain with fresh noise per window (as the seed
  drew it) instead of cuts of the per-process noise banks (augment.AugmentConfig.noise_bank_seconds).
* pipeline_augmented_vocoder_pitch: the default chain with the waveform pitch shift
  (augment.vocoder_pitch_shift) instead of the mel-stage one.
* cpu_ms_per_window: CPU time (one thread) of each augmentation and of the default chain's numpy
  part, and per example (all TF threads, batched) of the TF log-mel and of the extra cost of its
  pitch-shifted form, for a 10 s window; librosa.effects.pitch_shift and vocoder_pitch_shift among
  them.

Each variant is timed --repeats times, the variants taking turns, and the median is reported
(every value is kept in the JSON). Targets: pipeline_augmented >= 20x seed, and >= 50 % of
pipeline_ceiling. Prints a table (samples/s, ratios, cores used = process CPU / wall time, CPU ms
per sample) and writes OUT/bench_input.json with the load average: on a shared machine other
processes take cores, which shows as cores used below the machine's count; CPU ms per sample is
the figure least affected. The demo data and shards are built first when the default paths are
missing (as `make shards` does).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import colorednoise
import keras
import librosa
import numpy as np
import tensorflow as tf

from pipeline import schema
from pipeline.errors import UserError, run_main
from trainer import augment, config, data, mel

DEFAULT_DATA, DEFAULT_SHARDS = "data/demo", "data/shards/demo"
SPEEDUP_TARGET, CEILING_TARGET = 20.0, 0.5
VARIANTS = ("seed", "pipeline_ceiling", "pipeline_augmented", "pipeline_augmented_fresh_noise",
            "pipeline_augmented_vocoder_pitch")


# ----------------------------------------------------------------------------- the seed's generator


def _seed_chain(y: np.ndarray, sr: int) -> np.ndarray:
    """The seed's Compose([OneOf([Gaussian, Pink]), PitchShift, TimeShift, VolumeControl("sine")])."""
    a_noise = np.sqrt(y**2).max() / (10 ** (np.random.uniform(5.0, 20.0) / 20))
    if np.random.choice(2) == 0:
        noise = np.random.randn(len(y))
    else:
        noise = colorednoise.powerlaw_psd_gaussian(1, len(y))
    y = (y + noise * 1 / np.sqrt(noise**2).max() * a_noise).astype(y.dtype)
    y = librosa.effects.pitch_shift(y, sr=sr, n_steps=np.random.randint(-5, 5))
    y = np.roll(y, np.random.randint(-sr * 4, sr * 4))
    db = np.random.uniform(-10, 10)
    return y * 10 ** (db * np.sin(np.arange(len(y)) / len(y) * np.pi * 2) / 20)


def seed_sample(path: str, t_min: float, t_max: float, cfg: config.TrainConfig) -> np.ndarray:
    """One training sample the seed's way: [n_mels, frames] float32 (before its skimage resize)."""
    wav, sr = librosa.load(path, sr=None)
    length = int(cfg.window_seconds * sr)
    beginning = max(np.round((t_min * sr + t_max * sr) / 2) - length / 2, 0)
    ending = beginning + length
    if ending > len(wav):
        ending = len(wav)
        beginning = ending - length
    piece = _seed_chain(wav[int(beginning) : int(ending)], sr)
    m = cfg.mel
    spec = librosa.feature.melspectrogram(
        y=piece, n_fft=m.n_fft, hop_length=m.hop_length, sr=sr, fmin=m.fmin, fmax=m.fmax, power=2
    )
    spec = librosa.amplitude_to_db(np.abs(spec))
    spec = spec - np.min(spec)
    return spec / np.max(spec)


def _rate(num_samples: int, run: Callable[[], Any]) -> dict[str, float]:
    """Runs `run` (which produces num_samples samples): samples/s, cores used, CPU ms per sample.

    cores_used = process CPU time / wall time: below the machine's cores when other processes
    compete for them (or the work does not parallelise).
    """
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "samples_per_s": num_samples / wall,
        "cores_used": cpu / wall,
        "cpu_ms_per_sample": cpu / num_samples * 1000,
    }


def time_seed(data_dir: str, cfg: config.TrainConfig, num_samples: int, batch_size: int) -> dict[str, float]:
    """Rate of the seed generator over the first `num_samples` rows of train_tp.csv."""
    with open(os.path.join(data_dir, "train_tp.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[:num_samples]
    if not rows:
        raise UserError(f"{data_dir}/train_tp.csv has no rows to time the seed generator on")
    np.random.seed(0)
    frames = 1 + int(cfg.window_seconds * cfg.mel.sample_rate) // cfg.mel.hop_length
    batch = np.empty((batch_size, cfg.mel.n_mels, frames, 1))
    seed_sample(os.path.join(data_dir, "train", rows[0]["recording_id"] + ".flac"), 0.0, 1.0, cfg)  # warm-up

    def run() -> None:
        for i, row in enumerate(rows):
            path = os.path.join(data_dir, "train", row["recording_id"] + ".flac")
            batch[i % batch_size, ..., 0] = seed_sample(path, float(row["t_min"]), float(row["t_max"]), cfg)
            keras.utils.to_categorical(int(row["species_id"]), num_classes=cfg.num_classes)

    return _rate(len(rows), run)


# ----------------------------------------------------------------------------- our pipeline


def time_pipeline(
    inputs: data.FoldInputs, cfg: config.TrainConfig, batch_size: int, batches: int, warmup: int
) -> dict[str, float]:
    """Rate of trainer.data.train_dataset after `warmup` batches (tracing, buffers)."""
    needed = (warmup + batches) * batch_size
    cfg = dataclasses.replace(cfg, epochs=-(-needed // inputs.num_train) + 1)  # a long enough stream
    iterator = iter(data.train_dataset(inputs.train_files, cfg, global_batch=batch_size))
    for _ in range(warmup):
        next(iterator)

    def run() -> None:
        for _ in range(batches):
            next(iterator)[0].numpy()

    rate = _rate(batches * batch_size, run)
    del iterator  # stops its threads now, not at interpreter exit
    return rate


def _first_window(files: Sequence[str], cfg: config.TrainConfig) -> np.ndarray:
    """The first training slice, cropped to the window: float32 [window]."""
    record = next(iter(tf.data.TFRecordDataset(files[0]).take(1)))
    parsed = data.parse_train_record(record, cfg.num_classes)
    return data.crop_window(schema.pcm16_to_float(parsed["audio"]), 0, data.window_samples(cfg)).numpy()


def _cpu_ms(fn: Callable[[int], Any], calls: int) -> float:
    """Mean CPU ms of fn(i), i = 0..calls-1, on this thread, after one warm-up call (numba, caches)."""
    fn(0)
    start = time.thread_time()
    for i in range(calls):
        fn(i)
    return (time.thread_time() - start) / calls * 1000


def _tf_cpu_ms_per_example(fn: Callable[[], tf.Tensor], batch_size: int, calls: int = 4) -> float:
    """Process CPU ms per example of fn() (a batched TF computation on TF's own threads)."""
    fn().numpy()
    start = time.process_time()
    for _ in range(calls):
        fn().numpy()
    return (time.process_time() - start) / (calls * batch_size) * 1000


def time_costs(files: Sequence[str], cfg: config.TrainConfig, batch_size: int) -> dict[str, float]:
    """CPU ms per 10 s window of each augmentation, the default chain and the TF log-mel (batched).

    Explains the pipeline figures: on 2 cores the augmented pipeline reaches 50 % of its ceiling
    only if the augmentation costs no more CPU than the ceiling's whole per-example work.
    """
    y = _first_window(files, cfg)
    sr, steps = cfg.mel.sample_rate, [s for s in range(-5, 6) if s]
    bank = {"bank_seconds": cfg.augment.noise_bank_seconds, "sample_rate": sr}
    pieces = {
        "gaussian_noise_fresh": augment.GaussianNoiseSNR(),
        "gaussian_noise_bank": augment.GaussianNoiseSNR(**bank),
        "pink_noise_fresh": augment.PinkNoiseSNR(),
        "pink_noise_bank": augment.PinkNoiseSNR(**bank),
        "time_shift": augment.TimeShift(sample_rate=sr),
        "volume_sine": augment.VolumeControl(),
    }
    costs = {name: _cpu_ms(lambda i, t=t: t(y, np.random.default_rng(i)), 20) for name, t in pieces.items()}
    costs["pitch_shift_vocoder"] = _cpu_ms(lambda i: augment.vocoder_pitch_shift(y, steps[i % 10]), 20)
    costs["pitch_shift_librosa"] = _cpu_ms(
        lambda i: librosa.effects.pitch_shift(y, sr=sr, n_steps=steps[i % 10]), 10
    )
    augmentation = augment.build_augmentation(cfg.augment, sr, cfg.seed)
    costs["default_chain_numpy"] = _cpu_ms(lambda i: augment.augment_with_seed(augmentation, y, i), 20)
    batch = tf.constant(np.repeat(y[None], batch_size, axis=0))
    pitch_steps = tf.constant([steps[i % 10] for i in range(batch_size)])
    plain = tf.function(lambda w: mel.log_mel(w, cfg.mel))
    shifted = tf.function(lambda w, s: mel.log_mel(w, cfg.mel, s, augmentation.max_pitch_steps))
    costs["log_mel_tf"] = _tf_cpu_ms_per_example(lambda: plain(batch), batch_size)
    costs["pitch_shift_mel_extra"] = (
        _tf_cpu_ms_per_example(lambda: shifted(batch, pitch_steps), batch_size) - costs["log_mel_tf"]
    )
    return costs


# ----------------------------------------------------------------------------- driver


def ensure_demo_data(data_dir: str, shards_dir: str) -> None:
    """Builds the default demo dataset and shards when missing (the Makefile's on-demand rule)."""
    if (data_dir, shards_dir) != (DEFAULT_DATA, DEFAULT_SHARDS):
        return
    if not os.path.exists(os.path.join(data_dir, "train_tp.csv")):
        subprocess.run([sys.executable, "-m", "pipeline.demo_data", data_dir], check=True)
    if not os.path.exists(os.path.join(shards_dir, data.MANIFEST)):
        subprocess.run(
            [sys.executable, "-m", "pipeline.shards", "--data_dir", data_dir, "--output_dir", shards_dir],
            check=True,
        )


def _measure(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Appends fn()'s result to results["runs"][name], with the 1-min load average before and after."""
    load_before = os.getloadavg()[0]
    run = fn()
    run["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    results["runs"].setdefault(name, []).append(run)
    print(f"  {name}: {run}", flush=True)


def _median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median samples/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["samples_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def report(results: dict[str, Any]) -> str:
    rates = {name: results["median"][name] for name in VARIANTS}
    seed, ceiling = rates["seed"]["samples_per_s"], rates["pipeline_ceiling"]["samples_per_s"]
    lines = [
        f"input pipeline, {results['machine']['cpu_count']} cores, batch {results['batch_size']}, "
        f"window {results['window_seconds']:g} s at {results['sample_rate']} Hz, median of {results['repeats']} runs",
        f"{'variant':34s} {'samples/s':>9s} {'x seed':>7s} {'of ceiling':>10s} {'cores used':>10s} "
        f"{'CPU ms/sample':>13s}",
    ]
    for name, r in rates.items():
        value = r["samples_per_s"]
        lines.append(
            f"{name:34s} {value:9.1f} {value / seed:6.1f}x {value / ceiling:10.0%} "
            f"{r['cores_used']:10.2f} {r['cpu_ms_per_sample']:13.1f}"
        )
    costs = results["cpu_ms_per_window"]
    lines.append("CPU ms per 10 s window: " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    t = results["targets"]
    lines.append(
        f"targets: >= {SPEEDUP_TARGET:g}x seed: {'met' if t['speedup_met'] else 'NOT met'} "
        f"({t['speedup']:.1f}x); >= {CEILING_TARGET:.0%} of ceiling: "
        f"{'met' if t['ceiling_met'] else 'NOT met'} ({t['of_ceiling']:.0%})"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=DEFAULT_DATA, help="RFCX-layout dataset (FLAC + train_tp.csv) for the seed")
    p.add_argument("--shards_dir", default=DEFAULT_SHARDS, help="shards of that dataset for the pipeline")
    p.add_argument("--fold", type=int, default=0, help="validation fold; the pipeline reads the others")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="timed batches per pipeline variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--seed_samples", type=int, default=24, help="samples timed for the seed generator")
    p.add_argument("--repeats", type=int, default=3, help="timings per variant (the median is reported)")
    p.add_argument("--out", default="bench_out", help="directory of bench_input.json")
    args = p.parse_args(argv)
    if min(args.batch_size, args.batches, args.seed_samples, args.repeats) < 1 or args.warmup < 0:
        raise UserError("--batch_size, --batches, --seed_samples and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_demo_data(args.data_dir, args.shards_dir)
    cfg = config.preset_config("full")
    inputs = data.prepare_fold(args.shards_dir, args.fold, cfg)
    no_augment = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, enabled=False))
    vocoder_pitch = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, pitch_shift_method="vocoder"))
    fresh_noise = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, noise_bank_seconds=0.0))
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
            "librosa": librosa.__version__,
        },
        "batch_size": args.batch_size,
        "batches": args.batches,
        "seed_samples": args.seed_samples,
        "repeats": args.repeats,
        "window_seconds": cfg.window_seconds,
        "sample_rate": cfg.mel.sample_rate,
        "augment": cfg.augment.to_dict(),
        "seed_left_out": "skimage resize to (128, 1876)",
        "runs": {},
    }
    timed = lambda c: lambda: time_pipeline(inputs, c, args.batch_size, args.batches, args.warmup)
    print("timing (samples/s) ...", flush=True)
    results["cpu_ms_per_window"] = time_costs(inputs.train_files, cfg, args.batch_size)
    print(f"  cpu_ms_per_window: {results['cpu_ms_per_window']}", flush=True)
    variants = {
        "seed": lambda: time_seed(args.data_dir, cfg, args.seed_samples, args.batch_size),
        "pipeline_ceiling": timed(no_augment),
        "pipeline_augmented": timed(cfg),
        "pipeline_augmented_fresh_noise": timed(fresh_noise),
        "pipeline_augmented_vocoder_pitch": timed(vocoder_pitch),
    }
    for _ in range(args.repeats):  # the variants take turns, so a burst of load hits them alike
        for name, fn in variants.items():
            _measure(results, name, fn)
    results["median"] = {name: _median_run(results["runs"][name]) for name in VARIANTS}
    augmented = results["median"]["pipeline_augmented"]["samples_per_s"]
    speedup = augmented / results["median"]["seed"]["samples_per_s"]
    of_ceiling = augmented / results["median"]["pipeline_ceiling"]["samples_per_s"]
    results["targets"] = {
        "speedup": speedup,
        "speedup_met": speedup >= SPEEDUP_TARGET,
        "of_ceiling": of_ceiling,
        "ceiling_met": of_ceiling >= CEILING_TARGET,
    }
    table = report(results)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_input.json"), "w") as f:
        json.dump({**results, "table": table}, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'bench_input.json')}")


if __name__ == "__main__":
    run_main(main)
