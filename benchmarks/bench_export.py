"""Real-time factor and test LWLRAP of a run in each exported form, one process, on the demo test set.

    python -m benchmarks.bench_export --run runs/demo/fold0 [--shards_dir data/shards/demo]
        [--export_dir bench_out/export_<run>] [--forms keras saved_model tflite tflite_int8]
        [--max_recordings N] [--tflite_interpreters N] [--threads N] [--tflite_batch 16] [--out bench_out]
    python -m benchmarks.bench_export --untrained_preset full --max_recordings 2   # speed of the full preset
    make bench-export [RUN=runs/demo/fold0] [BENCH_ARGS=...]

The run is exported first with trainer.inference.export (into --export_dir; an existing export
there, one with metadata.json, is reused). The test recordings are decoded into memory before any
timing; then each form scores every recording, windows of the run's window every half window
(core.windows), a recording's score per species being the max over its windows (trainer.predict's rule):

* keras: the run's serving model (trainer.inference.serving, the run's own precision), batches of 16
  windows through predict_on_batch, as trainer.inference.predict does;
* saved_model: the export's "serving_default" signature, one call per recording (windowing inside);
* tflite, tflite_int8: model.tflite / model_int8.tflite through tf.lite's interpreter, --tflite_batch
  windows per call (default 16, as keras; 1 = an edge recorder's one window at a time), by
  --tflite_interpreters single-threaded interpreters at once (tflite_export.ParallelInterpreters; default:
  one per core), or with --tflite_interpreters 1 by one interpreter of --threads threads (default:
  every core).

Each form scores one window first (tracing, delegate set-up) outside the timing. Each form's recording
scores are compared with the first form's (keras by default): max and mean absolute difference. The real-time factor
is the test audio's seconds / the wall seconds of the scoring pass. LWLRAP is over recordings against
the shards' test_truth.csv (leaving out recordings without a positive). --untrained_preset builds
that preset's model with its initial weights instead of reading a run: speed only, no LWLRAP.

Prints a table and writes OUT/bench_export.json with the machine and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks import common
from core import export_layout as layout
from core import fs
from core import manifest as shards_layout
from core.windows import cut_windows, default_stride, window_batches
from trainer.data import discovery, recordings
from trainer.inference import export, serving, submission, tflite_export
from trainer.training import runs

FORMS = ("keras", "saved_model", "tflite", "tflite_int8")
KERAS_BATCH = 16


def make_untrained_run(preset: str, run_dir: str) -> str:
    """A run dir holding `preset`'s model with its initial weights (speed only; band_norm: unit statistics)."""
    from trainer.model.network import build_model
    from trainer.recipe import config as config_lib

    if runs.is_complete(run_dir):
        return run_dir
    cfg = config_lib.apply_overrides(config_lib.preset_config(preset), {"verbose": 0})
    shape = discovery.input_shape(cfg)
    fs.makedirs(run_dir)
    build_model(cfg, shape, band_stats=(np.zeros(shape[0]), np.ones(shape[0]))).save(os.path.join(run_dir, "best.keras"))
    config_lib.save_config(cfg, os.path.join(run_dir, "config.json"))
    fs.write_json(os.path.join(run_dir, "summary.json"), {"note": f"untrained {preset} model, built by bench_export"})
    return run_dir


def scorer(form: str, run: runs.Run, export_dir: str, threads: int, tflite_batch: int = 16,
           tflite_interpreters: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """form -> fn(waveform float32 [n]) -> window scores float32 [W, C] (core.windows, half-window stride)."""
    window = run.window_samples
    stride = default_stride(window)
    if form == "keras":
        model = serving.build_serving_model(run, runs.load_model(run))
        return lambda wave: np.concatenate([np.asarray(model.predict_on_batch(b), np.float32)
                                            for b, _ in window_batches([wave], window, stride, KERAS_BATCH)])
    if form == "saved_model":
        import tensorflow as tf

        signature = tf.saved_model.load(layout.path(export_dir, layout.SAVED_MODEL)).signatures[
            layout.RECORDING_SIGNATURE]
        return lambda wave: signature(**{layout.INPUT: tf.constant(wave)})[layout.SCORES].numpy()
    name = layout.TFLITE_FLOAT if form == "tflite" else layout.TFLITE_INT8
    path = layout.path(export_dir, name)
    if tflite_interpreters > 1:
        parallel = tflite_export.ParallelInterpreters(path, tflite_interpreters, tflite_batch)
        return lambda wave: parallel(cut_windows(wave, window, stride))[0]
    interpreter = tflite_export.interpreter(path, num_threads=threads)
    return lambda wave: tflite_export.run_tflite(interpreter, cut_windows(wave, window, stride), tflite_batch)[0]


def measure(score: Callable[[np.ndarray], np.ndarray], waves: Sequence[np.ndarray], sample_rate: int) -> dict[str, Any]:
    score(waves[0][: sample_rate])  # warm-up: one (padded) window
    start, cpu = time.perf_counter(), time.process_time()
    per_recording = [score(w).max(axis=0) for w in waves]  # [C] each: max over windows
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    audio = sum(len(w) for w in waves) / sample_rate
    wall = max(wall, 1e-9)  # a clock too coarse for a tiny input
    return {"scores": np.stack(per_recording), "wall_s": round(wall, 2), "audio_s": round(audio, 1),
            "real_time_factor": round(audio / wall, 1), "cores_used": round(cpu / wall, 2)}


def score_lwlrap(shards_dir: str, ids: Sequence[str], scores: np.ndarray) -> float | None:
    from trainer.evaluation.lwlrap import lwlrap

    truth_path = fs.join(shards_dir, shards_layout.TEST_TRUTH)
    if not fs.isfile(truth_path):
        return None
    truth = submission.read_score_table(truth_path).set_index(submission.ID_COLUMN)
    rows = truth.loc[list(ids)].to_numpy(np.float32)
    keep = rows.sum(axis=1) > 0
    return round(float(lwlrap(rows[keep], scores[keep])), 4) if keep.any() else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_export", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a finished run dir")
    source.add_argument("--untrained_preset", choices=("full", "cpu", "tiny"), help="speed only: that preset's "
                        "initial model")
    parser.add_argument("--shards_dir", default=common.DEFAULT_SHARDS)
    parser.add_argument("--export_dir", help="default: OUT/export_<run name>")
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    parser.add_argument("--max_recordings", type=int, default=0, help="the first N test recordings (0: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="TFLite interpreter threads")
    parser.add_argument("--tflite_batch", type=int, default=16, help="windows per TFLite interpreter call")
    parser.add_argument("--tflite_interpreters", type=int, default=os.cpu_count() or 1,
                        help="single-threaded TFLite interpreters scoring at once (1: one of --threads threads)")
    parser.add_argument("--out", default="bench_out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    common.ensure_demo_data(None, args.shards_dir)
    load_before = os.getloadavg()
    run_dir = args.run or make_untrained_run(args.untrained_preset, os.path.join(args.out, f"untrained_{args.untrained_preset}"))
    run = runs.open_run(run_dir)
    export_dir = args.export_dir or os.path.join(args.out, f"export_{fs.basename(run_dir.rstrip('/'))}")
    export_s = None
    if not fs.isfile(layout.path(export_dir, layout.METADATA)):
        start = time.perf_counter()
        export.main(["--run", run_dir, "--export_dir", export_dir, "--overwrite"])
        export_s = round(time.perf_counter() - start, 1)

    manifest = discovery.read_manifest(args.shards_dir)
    recs = list(recordings.iter_test_recordings(args.shards_dir, manifest))
    recs = recs[: args.max_recordings] if args.max_recordings > 0 else recs
    ids, waves = [r.recording_id for r in recs], [r.waveform for r in recs]
    rate = manifest.sample_rate
    results: dict[str, Any] = {}
    reference = None  # the first form's recording scores [R, C]: the others' differences from it
    for form in args.forms:
        print(f"{form}: scoring {len(waves)} recordings ...", flush=True)
        m = measure(scorer(form, run, export_dir, args.threads, args.tflite_batch, args.tflite_interpreters), waves, rate)
        scores = m.pop("scores")
        m["test_lwlrap"] = None if args.untrained_preset else score_lwlrap(args.shards_dir, ids, scores)
        if reference is None:
            reference, m["reference"] = scores, True
        else:
            diff = np.abs(scores - reference)
            m["max_abs_diff"], m["mean_abs_diff"] = float(diff.max()), float(diff.mean())
        m["load_after"] = common.load_average()
        results[form] = m
    summary = {
        "run": run_dir, "untrained": bool(args.untrained_preset), "preset": run.config.from_preset,
        "mixed_precision": run.config.mixed_precision, "export_dir": export_dir, "export_s": export_s,
        "window_samples": run.window_samples, "stride_samples": default_stride(run.window_samples),
        "num_recordings": len(waves), "tflite_threads": args.threads, "tflite_batch": args.tflite_batch,
        "tflite_interpreters": args.tflite_interpreters,
        "tflite_bytes": {f: os.path.getsize(layout.path(export_dir, n)) for f, n in
                         (("tflite", layout.TFLITE_FLOAT), ("tflite_int8", layout.TFLITE_INT8))
                         if os.path.exists(layout.path(export_dir, n))},
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": common.machine_info(),
        "forms": results,
    }
    print("\n| form | real-time factor | wall s | cores used | test LWLRAP | max / mean abs diff |\n|---|---|---|---|---|---|")
    for form, m in results.items():
        diff = "reference" if m.get("reference") else f"{m['max_abs_diff']:.2g} / {m['mean_abs_diff']:.2g}"
        print(f"| {form} | {m['real_time_factor']}x | {m['wall_s']} | {m['cores_used']} | {m['test_lwlrap']} | {diff} |")
    os.makedirs(args.out, exist_ok=True)
    name = "bench_export.json" if not args.untrained_preset else f"bench_export_untrained_{args.untrained_preset}.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {os.path.join(args.out, name)}")
    return summary


if __name__ == "__main__":
    main()
