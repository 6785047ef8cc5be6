"""Training speed of the real model at the `cpu` and `full` presets, with and without mixed precision,
on the CPU's own instruction set and on an AVX2-only path, with and without XLA.

    python -m benchmarks.bench_train [--shards_dir data/shards/demo] [--fold 0] [--presets cpu full]
        [--precisions float32 mixed] [--mel_devices host model] [--sources fixed pipeline]
        [--isas native avx2] [--jit_compile_cases auto on off] [--variant_presets cpu] [--windows 3]
        [--warmup_steps N] [--window_steps N] [--batch_size B] [--out bench_out] [--quick]
    make bench [SHARDS=dir] [BENCH_ISAS=native]   # with bench_shards and bench_input; --isas native avx2 by default

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

--isas runs each case on these instruction-set paths: native (what the CPU has) and avx2, which
emulates an AVX2-only CPU (e.g. an AMD Zen 2/3 cloud VM) on a newer one: the child process gets
ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN, which runs TensorFlow's convolutions and matmuls on x86, dispatches
no AVX-512 or AMX kernel) and XLA_FLAGS=--xla_cpu_max_isa=AVX2 (the same for XLA's CPU code). On such
a path bfloat16 has no native instruction, so "mixed" measures its emulation. --jit_compile_cases
runs each case with trainer.recipe.config's jit_compile at these values (auto = Keras' rule: no XLA on
a CPU-only machine; on = XLA-compiled steps; the first step then includes XLA's compilation).
Presets outside --variant_presets (default: cpu) run only the first --isas and --jit_compile_cases
value: a full-size step on 2 cores is already ~15 s natively. `make bench` adds the cpu preset's two
avx2 cases (float32, mixed), by the step counts below about two minutes each on 2 cores (a trace
and ~20 steps of 1-3 s); `--jit_compile_cases auto on` doubles the cpu preset's cases.

A callback notes the wall and CPU clock after every step (waiting for the step's loss). The first
steps of each source are warm-up (the first step of the first source also traces the graph: its
time is reported apart); the next --windows x --window_steps steps form the timed windows, and the
median window is reported as steps/s, examples/s (x the global batch) and cores used (process CPU
/ wall). With nvidia-smi on the PATH, the GPU's utilisation is sampled every 0.5 s and averaged over
the timed windows (gpu_util_percent; None without). Peak RSS is the child's peak resident memory
during each source (the peak is reset in between). Defaults keep `make bench` near 10 minutes on
2 cores: a full-size step takes ~15 s there, so the full preset times 1-step windows.

Prints a table (one row per preset, precision, log-mel placement, ISA path, XLA and source) and writes
OUT/bench_train.json, with the CPU's bfloat16 features (avx512_bf16 and
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
ISAS = ("native", "avx2")
JIT_COMPILE = ("auto", "on", "off")  # trainer.recipe.config.JitCompile (tested equal)
# What each ISA path sets in a case's environment (XLA_FLAGS is appended to, not replaced).
ISA_ENVIRONMENT = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}}


def isa_environment(isa: str, environ: dict[str, str]) -> dict[str, str]:
    """A copy of `environ` for a child process on the `isa` path (ISA_ENVIRONMENT; XLA_FLAGS extended)."""
    env = dict(environ)
    for key, value in ISA_ENVIRONMENT[isa].items():
        env[key] = f"{env[key]} {value}" if key == "XLA_FLAGS" and env.get(key) else value
    return env


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
             plans: dict[str, Plan], batch_size: int | None, mel_device: str = "auto", isa: str = "native",
             jit_compile: str = "auto") -> dict[str, Any]:
    """Times one preset at one precision on each source; runs in its own process (global policy, RSS).

    `isa` is only recorded: the environment the process started with decides the path (isa_environment).
    """
    import keras
    import numpy as np

    from trainer.data import discovery, inputs
    from trainer.features import placement as mel_placement
    from trainer.model import front_end, network, strategy
    from trainer.recipe import config

    cfg = config.preset_config(preset)
    cfg = dataclasses.replace(cfg, mixed_precision=precision == "mixed", verbose=0,
                              batch_size=batch_size or cfg.batch_size, jit_compile=jit_compile)
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
        "isa": isa, "environment": {k: os.environ.get(k) for k in ISA_ENVIRONMENT["avx2"]},
        "jit_compile": jit_compile, "xla": bool(net.jit_compile),  # what Keras resolved "auto" to
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
        print(f"  {preset} {precision} mel on {mel_device} {isa} XLA {jit_compile} {source}: "
              f"{result['sources'][source]['median']}", flush=True)
    return result


# ----------------------------------------------------------------------------- driver


def case_plans(preset: str, sources: Sequence[str], args: argparse.Namespace) -> dict[str, Plan]:
    """The Plan of each source: the first warms up longer (it traces the graph)."""
    warmup, window_steps = DEFAULT_STEPS.get(preset, DEFAULT_STEPS["cpu"])
    warmup = args.warmup_steps if args.warmup_steps is not None else warmup
    window_steps = args.window_steps or window_steps
    return {s: Plan(warmup if i == 0 else min(warmup, 1), window_steps, args.windows) for i, s in enumerate(sources)}


def case_list(args: argparse.Namespace) -> list[dict[str, str]]:
    """Every case to run: {"preset", "precision", "mel_device", "isa", "jit_compile"}, in table order.

    Presets outside --variant_presets take only the first --isas and --jit_compile_cases value.
    """
    cases = []
    for preset in args.presets:
        variants = preset in args.variant_presets
        for precision in args.precisions:
            for mel_device in args.mel_devices:
                for isa in args.isas if variants else args.isas[:1]:
                    for jit in args.jit_compile_cases if variants else args.jit_compile_cases[:1]:
                        cases.append({"preset": preset, "precision": precision, "mel_device": mel_device,
                                      "isa": isa, "jit_compile": jit})
    return cases


def _run_child(args: argparse.Namespace, case: dict[str, str]) -> dict[str, Any]:
    """Runs one case in a fresh interpreter; its result, or {**case, "error": ...} with the tail of its output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "case.json")
        spec = ":".join(case[k] for k in ("preset", "precision", "mel_device", "isa", "jit_compile"))
        command = [sys.executable, "-m", "benchmarks.bench_train", "--case", spec,
                   "--case_out", out,
                   "--shards_dir", args.shards_dir, "--fold", str(args.fold), "--windows", str(args.windows),
                   "--sources", *args.sources]
        for flag in ("warmup_steps", "window_steps", "batch_size"):
            if getattr(args, flag) is not None:
                command += [f"--{flag}", str(getattr(args, flag))]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout,
                                  env=isa_environment(case["isa"], dict(os.environ)))
        except subprocess.TimeoutExpired:
            return {**case, "error": f"timed out after {args.case_timeout} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            return {**case, "error": f"exit status {proc.returncode}:\n{tail}"}
        with open(out) as f:
            result = json.load(f)
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    print(proc.stdout.rstrip(), flush=True)
    return result


# The axes along which cases differ (besides preset and source), each with its default and how a
# speed-up label names a case off that default.
_AXES = {"precision": ("float32", lambda v: v), "mel_device": ("host", lambda v: f"mel on {v}"),
         "isa": ("native", lambda v: f"on {v}"), "xla": (False, lambda v: "XLA")}


def speedups(cases: Sequence[dict[str, Any]], axis: str, base: Any, other: Any) -> dict[str, dict[str, float]]:
    """{preset: {label: steps/s at axis=other / steps/s at axis=base}} over cases equal in every other axis.

    The label is the source, then every other axis off its default ("fixed mel on model", "pipeline on avx2").
    """
    def key(case: dict[str, Any]) -> tuple:
        return tuple(case.get(a, default) for a, (default, _) in _AXES.items() if a != axis)

    rate = {(c["preset"], c.get(axis, _AXES[axis][0]), key(c), s): v["median"]["steps_per_s"]
            for c in cases if "error" not in c for s, v in c["sources"].items()}
    labels = {key(c): [name(c[a]) for a, (default, name) in _AXES.items()
                       if a != axis and c.get(a, default) != default]
              for c in cases if "error" not in c}
    out: dict[str, dict[str, float]] = {}
    for (preset, value, rest, source), steps in rate.items():
        reference = rate.get((preset, base, rest, source))
        if value == other and reference:
            out.setdefault(preset, {})[" ".join([source, *labels[rest]])] = steps / reference
    return out


def mixed_speedups(cases: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{preset: {label: mixed steps/s / float32 steps/s}} where both were measured (see speedups)."""
    return speedups(cases, "precision", "float32", "mixed")


def report(results: dict[str, Any]) -> str:
    cpu = results["machine"]["cpu"]
    bf16 = (f"avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}, AMX bf16 "
            f"{'yes' if cpu['amx_tile'] and cpu['amx_bf16'] else 'no'}")
    lines = [f"training speed, {results['machine']['cpu_count']} cores ({cpu['model']}; {bf16}), median window"
             f"{' (QUICK: figures mean nothing)' if results['quick'] else ''}",
             f"{'preset':6s} {'precision':9s} {'mel on':6s} {'isa':6s} {'XLA':3s} {'source':8s} {'input':>12s} "
             f"{'batch':>5s} "
             f"{'steps/s':>8s} "
             f"{'examples/s':>10s} {'s/step':>7s} {'cores':>5s} {'GPU %':>5s} {'peak RSS MiB':>12s} "
             f"{'1st step s':>10s}"]
    for case in results["cases"]:
        device, isa = case.get("mel_device", "?"), case.get("isa", "native")
        xla = {True: "yes", False: "no"}.get(case.get("xla"), case.get("jit_compile", "?"))
        head = f"{case['preset']:6s} {case['precision']:9s} {device:6s} {isa:6s} {xla:3s}"
        if "error" in case:
            lines.append(f"{head} FAILED: {case['error'].splitlines()[0]}")
            continue
        shape = "x".join(str(d) for d in case["input_shape"])
        for source, r in case["sources"].items():
            m = r["median"]
            util = r.get("gpu_util_percent")
            lines.append(f"{head} {source:8s} {shape:>12s} "
                         f"{case['global_batch']:5d} {m['steps_per_s']:8.3f} {m['examples_per_s']:10.1f} "
                         f"{m['seconds_per_step']:7.2f} {m['cores_used']:5.2f} "
                         f"{'-' if util is None else format(util, '.0f'):>5s} "
                         f"{r['peak_rss_mib'] or float('nan'):12.0f} {r['first_step_seconds']:10.1f}")
    for title, key in (("mixed precision vs float32", "mixed_speedup"), ("avx2 path vs native", "avx2_vs_native"),
                       ("XLA vs none", "xla_speedup")):
        for preset, by_source in results.get(key, {}).items():
            lines.append(f"{title}, {preset}: " + ", ".join(f"{s} x{v:.2f}" for s, v in by_source.items()))
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
    p.add_argument("--isas", nargs="+", default=["native"], choices=ISAS,
                   help="instruction-set paths: native, avx2 (oneDNN and XLA limited to AVX2; make bench adds it)")
    p.add_argument("--jit_compile_cases", nargs="+", default=["auto"], choices=JIT_COMPILE,
                   help="the training config's jit_compile values to time (XLA: on; Keras' rule: auto)")
    p.add_argument("--variant_presets", nargs="*", default=["cpu"], choices=("cpu", "full", "tiny"),
                   help="presets that run every --isas and --jit_compile_cases value; the others the first only")
    p.add_argument("--windows", type=int, default=3, help="timed windows per source (the median is reported)")
    p.add_argument("--warmup_steps", type=int, default=None,
                   help="untimed steps of the first source (default per preset: cpu 2, full 1)")
    p.add_argument("--window_steps", type=int, default=None, help="steps per window (default: cpu 3, full 1)")
    p.add_argument("--batch_size", type=int, default=None, help="default: each preset's")
    p.add_argument("--case_timeout", type=float, default=1200.0, help="seconds before a case is abandoned")
    p.add_argument("--out", default="bench_out", help="directory of bench_train.json")
    p.add_argument("--quick", action="store_true", help="batch 4, 1 warm-up step, 2 windows of 1 step: checks it runs")
    p.add_argument("--case", help=argparse.SUPPRESS)  # PRESET:PRECISION:MEL_DEVICE:ISA:JIT, in a child process
    p.add_argument("--case_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.warmup_steps, args.window_steps, args.windows = 4, 1, 1, 2
    counts = [args.windows] + [v for v in (args.window_steps, args.batch_size) if v is not None]
    if min(counts) < 1 or (args.warmup_steps is not None and args.warmup_steps < 0):
        raise UserError("--windows, --window_steps and --batch_size must be >= 1, --warmup_steps >= 0")
    args.sources = [s for s in SOURCES if s in args.sources]  # fixed first: it takes the tracing
    args.isas = list(dict.fromkeys(args.isas))  # a value given twice runs once
    args.jit_compile_cases = list(dict.fromkeys(args.jit_compile_cases))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        preset, precision, mel_device, isa, jit_compile = args.case.split(":")
        result = run_case(args.shards_dir, args.fold, preset, precision, args.sources,
                          case_plans(preset, args.sources, args), args.batch_size, mel_device, isa, jit_compile)
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
    for case in case_list(args):
        results["cases"].append(_run_child(args, case))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["mixed_speedup"] = mixed_speedups(results["cases"])
    results["avx2_vs_native"] = speedups(results["cases"], "isa", "native", "avx2")
    results["xla_speedup"] = speedups(results["cases"], "xla", False, True)
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
                print(f"{case['preset']} {case['precision']} mel on {case.get('mel_device')} {case.get('isa')} "
                      f"jit_compile {case.get('jit_compile')} failed: {case['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
