"""Throughput of the training input pipeline against the seed notebook's per-sample generator.

    python -m benchmarks.bench_input [--shards_dir data/shards/demo --data_dir data/demo] [--fold 0]
        [--batch_size 32] [--batches 8] [--seed_samples 24] [--repeats 3] [--out bench_out] [--quick]
    make bench [SHARDS=dir DATA_DIR=dir]        # with bench_shards and bench_train

--shards_dir is any schema-v2 shards dir and --data_dir the RFCX-layout dataset it was built from (the
seed generator reads the FLACs); the defaults are what `make shards` writes (built first when missing).

Times, in one run on the same data and machine (samples/s), with the CURRENT default recipe of
the `full` preset (trainer.recipe.config.preset_config("full"), read at run time: 10 s windows at 48 kHz,
its augmentation, SpecAugment, mixup, input scaling and tp/negative draws):

* seed: a re-implementation of the seed's DataGenerator.__data_generation for one training sample:
  librosa.load of the whole FLAC (sr=None), the seed's crop around the event, the seed's chain
  (its GaussianNoiseSNR / PinkNoiseSNR / PitchShift(librosa) / TimeShift / VolumeControl code, on
  numpy's global generator as in the seed), librosa melspectrogram -> amplitude_to_db -> min-max,
  stored into a float64 batch array. One process, one sample after another, as the seed's
  keras Sequence ran it. Left out: the skimage resize to (128, 1876) (scikit-image is not a
  dependency), so the seed is timed slightly faster than it was.
* pipeline_augmented: trainer.data.inputs.train_dataset with that recipe (tp and fp/background slices
  drawn by negative_fraction, random crops, targets, the numpy chain through tf.numpy_function,
  log-mel in TF with the mel-stage pitch shift, SpecAugment masks, batching, mixup, prefetch),
  after --warmup batches.
* pipeline_ceiling: the same pipeline with augmentation disabled (augment.enabled=False: no numpy
  chain, masks or mixup), its upper bound.
* pipeline_augmented_mel_on_model, pipeline_ceiling_mel_on_model: the same two with `--mel.device model`
  (trainer.features.placement): the pipeline yields augmented waveforms and the draws of the
  log-mel augmentations, and the model computes the log-mel on the accelerator. Only the input
  pipeline is timed, so their CPU ms per sample is what the host spends per sample when a GPU/TPU
  computes the log-mel (target: <= 4 ms); their samples/s is the most the host can feed, measured
  here on the CPU alone (nothing computes the log-mel in this timing).
* pipeline_augmented_fresh_noise: the recipe with fresh noise per window (as the seed drew it)
  instead of cuts of the per-process noise banks (trainer.augment.chain.AugmentConfig.noise_bank_seconds); only
  when the recipe adds noise.
* pipeline_augmented_waveform_pitch: the recipe with the waveform pitch shift
  (librosa.effects.pitch_shift) instead of the mel-stage one; only when the recipe shifts pitch.
* cpu_ms_per_window: CPU time (one thread) of each augmentation and of the recipe's numpy chain,
  and per example (all TF threads, batched) of the TF log-mel, of its pitch-shifted form (+-5 semitones),
  and of the recipe's SpecAugment masks and mixup when on, for one window; librosa's pitch shift among them.

The host-placement variants are the recipe as trained without an accelerator (--mel.device host).
Each variant is timed --repeats times, the variants taking turns, and the median is reported
(every value is kept in the JSON, with the skipped variants and why). Targets: pipeline_augmented
>= 20x seed, and >= 50 % of pipeline_ceiling. Prints a table (samples/s, ratios, cores used =
process CPU / wall time, CPU ms per sample) and writes OUT/bench_input.json with the recipe and
the load average: on a shared machine other processes take cores, which shows as cores used below
the machine's count; CPU ms per sample is the figure least affected. --quick (tiny counts, batch
8) only proves that everything runs; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Sequence

import colorednoise
import keras
import librosa
import numpy as np
import tensorflow as tf

from benchmarks import common
from core.errors import UserError, run_main
from trainer.augment import chain
from trainer.augment import spec as spec_augment
from trainer.data import discovery, inputs, targets
from trainer.features import mel
from trainer.recipe import config

SPEEDUP_TARGET, CEILING_TARGET = 20.0, 0.5


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


def time_pipeline(fold: discovery.FoldInputs, cfg: config.TrainConfig, batch_size: int, batches: int,
                  warmup: int) -> dict[str, float]:
    """Rate of trainer.data.inputs.train_dataset after `warmup` batches (tracing, buffers, noise banks)."""
    steps = warmup + batches
    stream = inputs.train_dataset(fold.train_files_by_kind, dataclasses.replace(cfg, epochs=1),
                                  global_batch=batch_size, steps_per_epoch=steps)
    iterator = iter(stream)
    for _ in range(warmup):
        next(iterator)

    def run() -> None:
        for _ in range(batches):
            tf.nest.map_structure(lambda t: t.numpy(), next(iterator)[0])  # x, or the model-side inputs

    rate = _rate(batches * batch_size, run)
    iterator = None  # stops its threads now, not at interpreter exit
    return rate


# The input pipeline with the log-mel in the model (--mel.device model): what the host still does per sample.
MODEL_AUGMENTED, MODEL_CEILING = "pipeline_augmented_mel_on_model", "pipeline_ceiling_mel_on_model"
HOST_CPU_TARGET_MS = 4.0  # host CPU per sample with the log-mel in the model (a GPU's ~1,000 samples/s on 2 cores)


def _placed(cfg: config.TrainConfig, device: str) -> config.TrainConfig:
    """`cfg` with the log-mel computed on the host or in the model (--mel.device)."""
    return dataclasses.replace(cfg, mel=dataclasses.replace(cfg.mel, device=device))


def pipeline_variants(cfg: config.TrainConfig) -> tuple[dict[str, config.TrainConfig], dict[str, str]]:
    """({variant: config} to time, {variant: why skipped}) for the recipe `cfg`.

    The fresh-noise and waveform-pitch variants change one piece of the recipe, so they are timed only
    when the recipe has that piece; without augmentation at all only the ceiling remains.
    """
    a = cfg.augment
    cfg = _placed(cfg, "host")
    with_augment = lambda **changes: dataclasses.replace(cfg, augment=dataclasses.replace(a, **changes))
    variants = {"pipeline_ceiling": with_augment(enabled=False),
                MODEL_CEILING: _placed(with_augment(enabled=False), "model")}
    skipped: dict[str, str] = {}
    if not a.enabled:
        skipped["pipeline_augmented"] = "augmentation is off in the recipe (augment.enabled=False)"
        skipped[MODEL_AUGMENTED] = skipped["pipeline_augmented"]
        return variants, skipped
    variants["pipeline_augmented"] = cfg
    variants[MODEL_AUGMENTED] = _placed(cfg, "model")
    adds_noise = a.noise_p > 0 and (a.gaussian_noise or a.pink_noise)
    if not adds_noise:
        skipped["pipeline_augmented_fresh_noise"] = "the recipe adds no noise"
    elif a.noise_bank_seconds == 0:
        skipped["pipeline_augmented_fresh_noise"] = "the recipe already draws fresh noise (noise_bank_seconds=0)"
    else:
        variants["pipeline_augmented_fresh_noise"] = with_augment(noise_bank_seconds=0.0)
    if not (a.pitch_shift_p > 0 and a.pitch_shift_max_steps > 0):
        skipped["pipeline_augmented_waveform_pitch"] = "the recipe does not shift pitch"
    elif a.pitch_shift_method != "mel":
        skipped["pipeline_augmented_waveform_pitch"] = (f"the recipe already shifts pitch on the waveform "
                                                        f"({a.pitch_shift_method})")
    else:
        variants["pipeline_augmented_waveform_pitch"] = with_augment(pitch_shift_method="librosa")
    return variants, skipped


def _first_window(files: Sequence[str], cfg: config.TrainConfig) -> np.ndarray:
    """The first tp slice's window centred on its event: float32 [window]."""
    record = next(iter(tf.data.TFRecordDataset(files[0]).take(1)))
    return inputs.window_example(record, cfg, seed=None)["waveform"].numpy()


def _cpu_ms(fn: Callable[[int], Any], calls: int) -> float:
    """Mean CPU ms of fn(i), i = 0..calls-1, on this thread, after one warm-up call (numba, caches)."""
    fn(0)
    start = time.thread_time()
    for i in range(calls):
        fn(i)
    return (time.thread_time() - start) / calls * 1000


def _tf_cpu_ms_per_example(fn: Callable[[], Any], batch_size: int, calls: int = 4) -> float:
    """Process CPU ms per example of fn() (a batched TF computation on TF's own threads)."""
    tf.nest.map_structure(lambda t: t.numpy(), fn())
    start = time.process_time()
    for _ in range(calls):
        tf.nest.map_structure(lambda t: t.numpy(), fn())
    return (time.process_time() - start) / (calls * batch_size) * 1000


def time_costs(files: Sequence[str], cfg: config.TrainConfig, batch_size: int, calls: int = 20) -> dict[str, float]:
    """CPU ms per window of each augmentation, the recipe's numpy chain and the TF stages (batched).

    Explains the pipeline figures: on 2 cores the augmented pipeline reaches 50 % of its ceiling
    only if the augmentation costs no more CPU than the ceiling's whole per-example work.
    """
    y = _first_window(files, cfg)
    sr, steps = cfg.mel.sample_rate, [s for s in range(-5, 6) if s]
    bank = {"bank_seconds": cfg.augment.noise_bank_seconds or 60.0, "sample_rate": sr}
    pieces = {
        "gaussian_noise_fresh": chain.GaussianNoiseSNR(),
        "gaussian_noise_bank": chain.GaussianNoiseSNR(**bank),
        "pink_noise_fresh": chain.PinkNoiseSNR(),
        "pink_noise_bank": chain.PinkNoiseSNR(**bank),
        "time_shift": chain.TimeShift(sample_rate=sr),
        "block_shuffle": chain.BlockShuffle(sample_rate=sr),
        "volume_sine": chain.VolumeControl(),
    }
    costs = {name: _cpu_ms(lambda i, t=t: t(y, np.random.default_rng(i)), calls) for name, t in pieces.items()}
    costs["pitch_shift_librosa"] = _cpu_ms(
        lambda i: librosa.effects.pitch_shift(y, sr=sr, n_steps=steps[i % 10]), max(1, calls // 2)
    )
    augmentation = chain.build_augmentation(cfg.augment, sr, cfg.seed)
    costs["recipe_chain_numpy"] = _cpu_ms(lambda i: chain.augment_with_seed(augmentation, y, i), calls)
    batch = tf.constant(np.repeat(y[None], batch_size, axis=0))  # [B, window]
    pitch_steps = tf.constant([steps[i % 10] for i in range(batch_size)])
    plain = tf.function(lambda w: mel.log_mel(w, cfg.mel))
    shifted = tf.function(lambda w, s: mel.log_mel(w, cfg.mel, s, 5))
    costs["log_mel_tf"] = _tf_cpu_ms_per_example(lambda: plain(batch), batch_size)
    costs["pitch_shift_mel_extra"] = (
        _tf_cpu_ms_per_example(lambda: shifted(batch, pitch_steps), batch_size) - costs["log_mel_tf"]
    )
    x = plain(batch)[..., tf.newaxis]  # [B, n_mels, frames, 1]
    seed = tf.constant([cfg.seed, 0], tf.int64)
    if spec_augment.masking_enabled(cfg.augment):
        masks = tf.function(lambda x: tf.map_fn(lambda e: spec_augment.mask(e, cfg.augment, seed), x))
        costs["spec_augment_masks_tf"] = _tf_cpu_ms_per_example(lambda: masks(x), batch_size)
    if spec_augment.mixup_enabled(cfg.augment):
        y_batch = tf.zeros([batch_size, 2 * cfg.num_classes])
        mix = tf.function(lambda x, t: spec_augment.mixup(x, t, cfg.augment, functools.partial(targets.mix, num_classes=cfg.num_classes), seed))
        costs["mixup_tf"] = _tf_cpu_ms_per_example(lambda: mix(x, y_batch), batch_size)
    return costs


# ----------------------------------------------------------------------------- driver


def _measure(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Appends fn()'s result to results["runs"][name], with the 1-min load average before and after."""
    load_before = common.load_average()
    run = fn()
    run["load_average_1min"] = [load_before, common.load_average()]
    results["runs"].setdefault(name, []).append(run)
    print(f"  {name}: {run}", flush=True)


def report(results: dict[str, Any]) -> str:
    rates = results["median"]
    seed, ceiling = rates["seed"]["samples_per_s"], rates["pipeline_ceiling"]["samples_per_s"]
    lines = [
        f"input pipeline, {results['machine']['cpu_count']} cores, batch {results['batch_size']}, "
        f"window {results['window_seconds']:g} s at {results['sample_rate']} Hz, {results['preset']} preset's recipe, "
        f"median of {results['repeats']} runs{' (QUICK: figures mean nothing)' if results['quick'] else ''}",
        f"{'variant':34s} {'samples/s':>9s} {'x seed':>7s} {'of ceiling':>10s} {'cores used':>10s} "
        f"{'CPU ms/sample':>13s}",
    ]
    for name, r in rates.items():
        value = r["samples_per_s"]
        lines.append(
            f"{name:34s} {value:9.1f} {value / seed:6.1f}x {value / ceiling:10.0%} "
            f"{r['cores_used']:10.2f} {r['cpu_ms_per_sample']:13.1f}"
        )
    for name, why in results["skipped"].items():
        lines.append(f"{name:34s} skipped: {why}")
    costs = results["cpu_ms_per_window"]
    lines.append(f"CPU ms per {results['window_seconds']:g} s window: " +
                 ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    t = results["targets"]
    if t:
        lines.append(
            f"targets: >= {SPEEDUP_TARGET:g}x seed: {'met' if t['speedup_met'] else 'NOT met'} "
            f"({t['speedup']:.1f}x); >= {CEILING_TARGET:.0%} of ceiling: "
            f"{'met' if t['ceiling_met'] else 'NOT met'} ({t['of_ceiling']:.0%})"
        )
    placements = results.get("host_cpu_ms_per_sample", {})
    if placements:
        lines.append("host CPU ms per sample (median of the runs), log-mel on the host -> in the model: " + "; ".join(
            f"{kind} {p['host']:.1f} -> {p['model']:.1f}" for kind, p in placements.items()))
    if "host_cpu_met" in t:
        lines.append(f"target: host CPU <= {HOST_CPU_TARGET_MS:g} ms per sample with --mel.device model: "
                     f"{'met' if t['host_cpu_met'] else 'NOT met'} ({t['host_cpu_ms_mel_on_model']:.1f} ms)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_input", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards_dir", default=common.DEFAULT_SHARDS,
                   help="schema-v2 shards for the pipeline (default: what `make shards` writes)")
    p.add_argument("--data_dir", default=None,
                   help=f"the RFCX-layout dataset (FLAC + train_tp.csv) those shards were built from, for the "
                        f"seed generator; default {common.DEFAULT_DATA} with the default shards, required otherwise")
    p.add_argument("--fold", type=int, default=0, help="validation fold; the pipeline reads the others")
    p.add_argument("--batch_size", type=int, default=None, help="default: the full preset's")
    p.add_argument("--batches", type=int, default=8, help="timed batches per pipeline variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--seed_samples", type=int, default=24, help="samples timed for the seed generator")
    p.add_argument("--repeats", type=int, default=3, help="timings per variant (the median is reported)")
    p.add_argument("--out", default="bench_out", help="directory of bench_input.json")
    p.add_argument("--quick", action="store_true",
                   help="tiny counts (batch 8, 2 batches, 2 seed samples, 1 repeat) to check that it runs")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.batches, args.warmup, args.seed_samples, args.repeats = 8, 2, 1, 2, 1
    if args.data_dir is None:
        if args.shards_dir != common.DEFAULT_SHARDS:
            raise UserError("--data_dir is required with --shards_dir: the seed generator reads the FLACs the "
                            "shards were built from")
        args.data_dir = common.DEFAULT_DATA
    counts = (args.batches, args.seed_samples, args.repeats) + ((args.batch_size,) if args.batch_size else ())
    if min(counts) < 1 or args.warmup < 0:
        raise UserError("--batch_size, --batches, --seed_samples and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    common.ensure_demo_data(args.data_dir, args.shards_dir)
    cfg = config.preset_config("full")
    if args.batch_size is None:
        args.batch_size = cfg.batch_size
    fold = discovery.prepare_fold(args.shards_dir, args.fold, cfg)
    variants, skipped = pipeline_variants(cfg)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": common.machine_info(),
        "quick": args.quick,
        "shards_dir": args.shards_dir,
        "data_dir": args.data_dir,
        "fold": args.fold,
        "num_train_by_kind": fold.num_train_by_kind,
        "preset": "full",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "seed_samples": args.seed_samples,
        "repeats": args.repeats,
        "window_seconds": cfg.window_seconds,
        "sample_rate": cfg.mel.sample_rate,
        "recipe": config.config_to_dict(cfg),
        "seed_left_out": "skimage resize to (128, 1876)",
        "skipped": skipped,
        "runs": {},
    }
    print(f"recipe (full preset): negative_fraction {cfg.negative_fraction}, mel scaling {cfg.mel.scaling}, "
          f"augment {dataclasses.asdict(cfg.augment)}", flush=True)
    for name, why in skipped.items():
        print(f"  {name}: skipped ({why})", flush=True)
    print("timing (samples/s) ...", flush=True)
    results["cpu_ms_per_window"] = time_costs(fold.train_files_by_kind["tp"], cfg, args.batch_size,
                                              calls=2 if args.quick else 20)
    print(f"  cpu_ms_per_window: {results['cpu_ms_per_window']}", flush=True)
    timed = {name: (lambda c=c: time_pipeline(fold, c, args.batch_size, args.batches, args.warmup))
             for name, c in variants.items()}
    timed = {"seed": lambda: time_seed(args.data_dir, cfg, args.seed_samples, args.batch_size), **timed}
    for _ in range(args.repeats):  # the variants take turns, so a burst of load hits them alike
        for name, fn in timed.items():
            _measure(results, name, fn)
    results["median"] = {name: common.median_by(results["runs"][name], "samples_per_s") for name in timed}
    results["targets"] = {}
    # Host CPU per sample in each placement: with the log-mel in the model that is all the host does.
    cpu_ms = {name: float(np.median([r["cpu_ms_per_sample"] for r in runs])) for name, runs in results["runs"].items()}
    results["host_cpu_ms_per_sample"] = {
        kind: {"host": cpu_ms[host], "model": cpu_ms[model]}
        for kind, host, model in (("augmented", "pipeline_augmented", MODEL_AUGMENTED),
                                  ("ceiling", "pipeline_ceiling", MODEL_CEILING))
        if host in cpu_ms and model in cpu_ms}
    if "pipeline_augmented" in results["median"]:
        augmented = results["median"]["pipeline_augmented"]["samples_per_s"]
        speedup = augmented / results["median"]["seed"]["samples_per_s"]
        of_ceiling = augmented / results["median"]["pipeline_ceiling"]["samples_per_s"]
        results["targets"] = {
            "speedup": speedup,
            "speedup_met": speedup >= SPEEDUP_TARGET,
            "of_ceiling": of_ceiling,
            "ceiling_met": of_ceiling >= CEILING_TARGET,
        }
    if MODEL_AUGMENTED in cpu_ms:
        results["targets"]["host_cpu_ms_mel_on_model"] = cpu_ms[MODEL_AUGMENTED]
        results["targets"]["host_cpu_met"] = cpu_ms[MODEL_AUGMENTED] <= HOST_CPU_TARGET_MS
    table = report(results)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_input.json"), "w") as f:
        json.dump({**results, "table": table}, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'bench_input.json')}")


if __name__ == "__main__":
    run_main(main)
