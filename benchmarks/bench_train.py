"""Training speed of the real model at the `cpu` and `full` presets, with and without mixed precision.

    python -m benchmarks.bench_train [--shards_dir data/shards/demo] [--fold 0] [--presets cpu full]
        [--precisions float32 mixed] [--mel_devices host model] [--sources fixed pipeline] [--windows 3]
        [--warmup_steps N] [--window_steps N] [--batch_size B] [--out bench_out] [--quick]
    make bench [SHARDS=dir]        # with bench_shards and bench_input

--shards_dir is any schema-v2 shards dir (e.g. `--shards_dir /tmp/exp/sh_partial`, 10 s slices);
the default is what `make shards` writes (built first when missing).

For each preset and precision (float32; "mixed" = the preset with mixed_precision=True: bfloat16
on a CPU, see trainer.model.strategy), one child process builds the model the way trainer.training.train does
(trainer.recipe.config.preset_config read at run time, strategy.resolve + set_precision,
model.build_model + compile_model; band_norm gets placeholder statistics, which do not change the
cost) and runs Keras `fit` on two sources in turn:

and, with --mel_devices, for each placement of the log-mel (`--mel.device`: host = the input pipeline
computes it, model = the model's first layer does, trainer.model.front_end; default: the one `auto`
picks on this machine, so host without a GPU/TPU; `--mel_devices host model` on an accelerator
measures both),

* fixed: the input pipeline's first batch, cached in memory and repeated (the model's cost alone);
* pipeline: trainer.data.inputs.train_dataset over the shards' training folds with the preset's recipe,
  running beside the model on the same cores, as in training.

A callback notes the wall and CPU clock after every step (waiting for the step's loss). The first
steps of each source are warm-up (the first step of the first source also traces the graph: its
time is reported apart); the next --windows x --window_steps steps form the timed windows, and the
median window is reported as steps/s, examples/s (x the global batch) and cores used (process CPU
/ wall). With nvidia-smi on the PATH, the GPU's utilisation is sampled every 0.5 s and averaged over
the timed windows (gpu_util_percent; None without). Peak RSS is the child's peak resident memory
during each source (the peak is reset in between). Defaults keep `make bench` near 10 minutes on
2 cores: a full-size step takes ~15 s there, so the full preset times 1-step windows.

Prints a table and writes OUT/bench_train.json, with the CPU's bfloat16 features (avx512_bf16 and
AMX from /proc/cpuinfo: without them bfloat16 is emulated and mixed precision is slower) and the
load average (the machine may be shared; cores used below the core count shows it). --quick
(batch 4, 1 warm-up step, 2 windows of 1 step) only proves that every case runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from benchmarks import common
from core.errors import UserError, run_main

PRESETS = ("cpu", "full")
PRECISIONS = ("float32", "mixed")
SOURCES = ("fixed", "pipeline")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Steps of one source: `warmup` untimed, then `windows` windows of `window_steps` steps."""

    warmup: int
    window_steps: int
    windows: int

    @property
    def steps(self) -> int:
        return self.warmup + self.window_steps * self.windows


# Per preset (warm-up steps of the first source, steps per window): a full-size step is ~15 s on
# 2 cores, a cpu-preset step ~1-3 s. The second source needs one warm-up step (no tracing).
DEFAULT_STEPS = {"cpu": (2, 3), "full": (1, 1), "tiny": (2, 3)}


def window_rates(wall: Sequence[float], cpu: Sequence[float], warmup: int, window_steps: int,
                 examples_per_step: int) -> list[dict[str, float]]:
    """Rates of the timed windows from clock readings taken at the start and after every step.

    wall[0] / cpu[0] are read before step 1, wall[i] / cpu[i] after step i (seconds). Steps
    1..warmup are left out; each following run of `window_steps` steps is one window (an
    incomplete last one is dropped). Returns per window: steps_per_s, examples_per_s,
    seconds_per_step and cores_used (CPU seconds / wall seconds).
    """
    if len(wall) != len(cpu):
        raise ValueError(f"{len(wall)} wall readings but {len(cpu)} CPU readings")
    out = []
    for start in range(warmup, len(wall) - window_steps, window_steps):
        end = start + window_steps
        seconds, cpu_seconds = wall[end] - wall[start], cpu[end] - cpu[start]
        out.append({"steps_per_s": window_steps / seconds,
                    "examples_per_s": window_steps * examples_per_step / seconds,
                    "seconds_per_step": seconds / window_steps,
                    "cores_used": cpu_seconds / seconds})
    return out


# ----------------------------------------------------------------------------- one case (child process)


def _step_clock():  # a factory: keras is imported in the child only
    import keras

    class StepClock(keras.callbacks.Callback):
        """Wall and process CPU clocks before the first step and after each step (synchronous)."""

        def on_train_begin(self, logs=None):
            self.wall, self.cpu, self.loss = [time.perf_counter()], [time.process_time()], float("nan")

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])  # a tensor until read: reading it waits for the step
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepClock()


class GpuUtilisation:
    """nvidia-smi's utilization.gpu (percent, first GPU) sampled every `interval` s in a thread, with times."""

    def __init__(self, interval: float = 0.5) -> None:
        import shutil
        import threading

        self.samples: list[tuple[float, float]] = []  # (perf_counter, percent)
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)

    def _poll(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples.append((time.perf_counter(), float(out[0])))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(interval)

    def __enter__(self) -> "GpuUtilisation":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def mean_after(self, start: float) -> float | None:
        """Mean percent of the samples taken after perf_counter `start`; None without any."""
        values = [v for t, v in self.samples if t >= start]
        return sum(values) / len(values) if values else None


def run_case(shards_dir: str, fold_index: int, preset: str, precision: str, sources: Sequence[str],
             plans: dict[str, Plan], batch_size: int | None, mel_device: str = "auto") -> dict[str, Any]:
    """Times one preset at one precision on each source; runs in its own process (global policy, RSS)."""
    import keras
    import numpy as np

    from trainer.data import discovery, inputs
    from trainer.features import placement as mel_placement
    from trainer.model import front_end, network, strategy
    from trainer.recipe import config

    cfg = config.preset_config(preset)
    cfg = dataclasses.replace(cfg, mixed_precision=precision == "mixed", verbose=0,
                              batch_size=batch_size or cfg.batch_size)
    fold = discovery.prepare_fold(shards_dir, fold_index, cfg)
    placement = strategy.resolve(cfg.strategy, cfg.tpu)
    mel_device = mel_placement.resolve(mel_device)[0]  # after the strategy: a TPU is listed once initialised
    cfg = dataclasses.replace(cfg, mel=dataclasses.replace(cfg.mel, device=mel_device))
    policy = strategy.set_precision(placement, cfg.mixed_precision)
    keras.utils.set_random_seed(cfg.seed)
    global_batch = cfg.batch_size * placement.num_replicas
    shape = discovery.input_shape(cfg)
    one = dataclasses.replace(cfg, epochs=1)
    band_stats = (np.zeros(cfg.mel.n_mels), np.ones(cfg.mel.n_mels)) if cfg.band_norm else None
    longest = max(plans[s].steps for s in sources)
    with placement.strategy.scope():
        net = network.build_model(cfg, shape, band_stats)
        if mel_device == mel_placement.MODEL:
            net = front_end.build_training_model(cfg, net)  # waveforms in, as trainer.training.train builds it
        network.compile_model(net, cfg, steps_per_epoch=longest)
    result: dict[str, Any] = {
        "preset": preset, "precision": precision, "mel_device": mel_device, "policy": policy,
        "strategy": placement.name,
        "replicas": placement.num_replicas, "global_batch": global_batch, "input_shape": list(shape),
        "params": int(net.count_params()), "sources": {},
        "preset_uses_mixed_precision": config.preset_config(preset).mixed_precision,
        "recipe": {k: getattr(cfg, k) for k in ("window_seconds", "negative_fraction", "freq_channel", "band_norm",
                                                "dense_units", "loss", "optimizer")}
                  | {"mel": dataclasses.asdict(cfg.mel), "augment": dataclasses.asdict(cfg.augment)},
    }
    for source in sources:
        plan = plans[source]
        stream = inputs.train_dataset(fold.train_files_by_kind, one, global_batch, steps_per_epoch=plan.steps,
                                      replicas=placement.num_replicas)
        if source == "fixed":
            # The pipeline's first batch, cached and repeated: the same element spec as the pipeline's
            # (y is [B, None] there), so switching sources does not retrace the train step.
            stream = stream.take(1).cache().repeat(plan.steps)
        clock = _step_clock()
        common.reset_peak_rss()
        load = common.load_average()
        with GpuUtilisation() as gpu:
            net.fit(stream, epochs=1, steps_per_epoch=plan.steps, callbacks=[clock], verbose=0, shuffle=False)
        windows = window_rates(clock.wall, clock.cpu, plan.warmup, plan.window_steps, global_batch)
        result["sources"][source] = {
            "plan": dataclasses.asdict(plan),
            "windows": windows,
            "median": common.median_by(windows, "steps_per_s"),
            "first_step_seconds": clock.wall[1] - clock.wall[0],  # tracing included for the first source
            "peak_rss_mib": common.peak_rss_mib(),
            "last_loss": clock.loss,  # finite, or mixed precision broke something
            "load_average_1min": [load, common.load_average()],
            "gpu_util_percent": gpu.mean_after(clock.wall[plan.warmup]),  # the timed windows; None without a GPU
        }
        del stream
        print(f"  {preset} {precision} mel on {mel_device} {source}: {result['sources'][source]['median']}", flush=True)
    return result


# ----------------------------------------------------------------------------- driver


def case_plans(preset: str, sources: Sequence[str], args: argparse.Namespace) -> dict[str, Plan]:
    """The Plan of each source: the first warms up longer (it traces the graph)."""
    warmup, window_steps = DEFAULT_STEPS.get(preset, DEFAULT_STEPS["cpu"])
    warmup = args.warmup_steps if args.warmup_steps is not None else warmup
    window_steps = args.window_steps or window_steps
    return {s: Plan(warmup if i == 0 else min(warmup, 1), window_steps, args.windows) for i, s in enumerate(sources)}


def _run_child(args: argparse.Namespace, preset: str, precision: str, mel_device: str = "auto") -> dict[str, Any]:
    """Runs one case in a fresh interpreter; its result, or {"error": ...} with the tail of its output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "case.json")
        command = [sys.executable, "-m", "benchmarks.bench_train", "--case", f"{preset}:{precision}:{mel_device}",
                   "--case_out", out,
                   "--shards_dir", args.shards_dir, "--fold", str(args.fold), "--windows", str(args.windows),
                   "--sources", *args.sources]
        for flag in ("warmup_steps", "window_steps", "batch_size"):
            if getattr(args, flag) is not None:
                command += [f"--{flag}", str(getattr(args, flag))]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout)
        except subprocess.TimeoutExpired:
            return {"preset": preset, "precision": precision, "mel_device": mel_device,
                    "error": f"timed out after {args.case_timeout} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            return {"preset": preset, "precision": precision, "mel_device": mel_device,
                    "error": f"exit status {proc.returncode}:\n{tail}"}
        with open(out) as f:
            result = json.load(f)
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    print(proc.stdout.rstrip(), flush=True)
    return result


def mixed_speedups(cases: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{preset: {source: mixed steps/s / float32 steps/s}} where both were measured (source + " mel on model"
    with the log-mel in the model)."""
    rate = {(c["preset"], c["precision"], c.get("mel_device", "host"), s): v["median"]["steps_per_s"]
            for c in cases if "error" not in c for s, v in c["sources"].items()}
    out: dict[str, dict[str, float]] = {}
    for (preset, precision, device, source), value in rate.items():
        base = rate.get((preset, "float32", device, source))
        if precision == "mixed" and base:
            out.setdefault(preset, {})[source + (" mel on model" if device == "model" else "")] = value / base
    return out


def report(results: dict[str, Any]) -> str:
    cpu = results["machine"]["cpu"]
    bf16 = (f"avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}, AMX bf16 "
            f"{'yes' if cpu['amx_tile'] and cpu['amx_bf16'] else 'no'}")
    lines = [f"training speed, {results['machine']['cpu_count']} cores ({cpu['model']}; {bf16}), median window"
             f"{' (QUICK: figures mean nothing)' if results['quick'] else ''}",
             f"{'preset':6s} {'precision':9s} {'mel on':6s} {'source':8s} {'input':>12s} {'batch':>5s} "
             f"{'steps/s':>8s} "
             f"{'examples/s':>10s} {'s/step':>7s} {'cores':>5s} {'GPU %':>5s} {'peak RSS MiB':>12s} "
             f"{'1st step s':>10s}"]
    for case in results["cases"]:
        device = case.get("mel_device", "?")
        if "error" in case:
            lines.append(f"{case['preset']:6s} {case['precision']:9s} {device:6s} "
                         f"FAILED: {case['error'].splitlines()[0]}")
            continue
        shape = "x".join(str(d) for d in case["input_shape"])
        for source, r in case["sources"].items():
            m = r["median"]
            util = r.get("gpu_util_percent")
            lines.append(f"{case['preset']:6s} {case['precision']:9s} {device:6s} {source:8s} {shape:>12s} "
                         f"{case['global_batch']:5d} {m['steps_per_s']:8.3f} {m['examples_per_s']:10.1f} "
                         f"{m['seconds_per_step']:7.2f} {m['cores_used']:5.2f} "
                         f"{'-' if util is None else format(util, '.0f'):>5s} "
                         f"{r['peak_rss_mib'] or float('nan'):12.0f} {r['first_step_seconds']:10.1f}")
    for preset, by_source in results["mixed_speedup"].items():
        lines.append(f"mixed precision vs float32, {preset}: " +
                     ", ".join(f"{s} x{v:.2f}" for s, v in by_source.items()))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards_dir", default=common.DEFAULT_SHARDS,
                   help="schema-v2 shards (default: what `make shards` writes)")
    p.add_argument("--fold", type=int, default=0, help="validation fold; the pipeline reads the others")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=("cpu", "full", "tiny"))
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--mel_devices", nargs="+", default=["auto"], choices=("auto", "host", "model"),
                   help="where the log-mel is computed (--mel.device of training); default: what auto picks here")
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES,
                   help="fixed: one in-memory batch repeated; pipeline: the real input pipeline (in this order)")
    p.add_argument("--windows", type=int, default=3, help="timed windows per source (the median is reported)")
    p.add_argument("--warmup_steps", type=int, default=None,
                   help="untimed steps of the first source (default per preset: cpu 2, full 1)")
    p.add_argument("--window_steps", type=int, default=None, help="steps per window (default: cpu 3, full 1)")
    p.add_argument("--batch_size", type=int, default=None, help="default: each preset's")
    p.add_argument("--case_timeout", type=float, default=1200.0, help="seconds before a case is abandoned")
    p.add_argument("--out", default="bench_out", help="directory of bench_train.json")
    p.add_argument("--quick", action="store_true", help="batch 4, 1 warm-up step, 2 windows of 1 step: checks it runs")
    p.add_argument("--case", help=argparse.SUPPRESS)  # PRESET:PRECISION:MEL_DEVICE, run in a child process
    p.add_argument("--case_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.warmup_steps, args.window_steps, args.windows = 4, 1, 1, 2
    counts = [args.windows] + [v for v in (args.window_steps, args.batch_size) if v is not None]
    if min(counts) < 1 or (args.warmup_steps is not None and args.warmup_steps < 0):
        raise UserError("--windows, --window_steps and --batch_size must be >= 1, --warmup_steps >= 0")
    args.sources = [s for s in SOURCES if s in args.sources]  # fixed first: it takes the tracing
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        preset, precision, mel_device = args.case.split(":")
        result = run_case(args.shards_dir, args.fold, preset, precision, args.sources,
                          case_plans(preset, args.sources, args), args.batch_size, mel_device)
        with open(args.case_out, "w") as f:
            json.dump(result, f)
        return
    common.ensure_demo_data(None, args.shards_dir)
    from trainer.data import discovery
    from trainer.recipe import config

    fold = discovery.prepare_fold(args.shards_dir, args.fold, config.preset_config("full"))  # one clear error up front
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": common.machine_info(),
        "quick": args.quick,
        "shards_dir": args.shards_dir,
        "fold": args.fold,
        "num_train_by_kind": fold.num_train_by_kind,
        "cases": [],
    }
    print(f"CPU {results['machine']['cpu']}; timing training steps ...", flush=True)
    started = time.perf_counter()
    for preset in args.presets:
        for precision in args.precisions:
            for mel_device in args.mel_devices:
                results["cases"].append(_run_child(args, preset, precision, mel_device))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["mixed_speedup"] = mixed_speedups(results["cases"])
    table = report(results)
    print(table)
    print(f"total {results['total_seconds']:.0f} s")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_train.json"), "w") as f:
        json.dump({**results, "table": table}, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'bench_train.json')}")
    failed = [f"{c['preset']} {c['precision']}" for c in results["cases"] if "error" in c]
    if failed:
        for case in results["cases"]:
            if "error" in case:
                print(f"{case['preset']} {case['precision']} mel on {case.get('mel_device')} failed: {case['error']}",
                      file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
