"""A preset's classifier on a GPU machine that has JAX but no TensorFlow, and that host's numpy augmentation rate.

The trainer runs on TensorFlow. On an accelerator machine where TensorFlow cannot be installed (e.g. an
image with JAX and a newer CUDA, and no package registry to reach), this still times the model the
trainer would train there: trainer.model.network's build_model + compile_model (backbone, head, masked
loss, LWLRAP metric, optimizer and schedule), which import no TensorFlow, under Keras 3's JAX backend,
on log-mels held on the device, so it is the model's cost alone (bench_train's "fixed" source), not the
TensorFlow input pipeline's. Beside it, the host's share that runs before the log-mel in training: the
preset's numpy augmentation chain (trainer.augment.chain.augment_with_seed, as tf.numpy_function calls it)
on 1..N processes at once, windows/s.

    # here, with TensorFlow: the preset as TrainConfig resolves it, and the model's input shape
    python -m benchmarks.bench_keras_jax --write_config cfg.json [--preset full]
    # there, with JAX (Keras 3 and colorednoise carried as wheels when missing)
    KERAS_BACKEND=jax python -m benchmarks.bench_keras_jax --config cfg.json --out DIR \
        [--batch_sizes 32 128] [--precisions float32 mixed_float16 mixed_bfloat16] [--windows 3] \
        [--window_steps 10] [--processes 1 8 16] [--augment_seconds 8]

For each batch size and precision (Keras' dtype policy; mixed_float16 wraps the optimizer in loss
scaling, as the trainer's GPU path does), a fresh model takes a first step (its time includes XLA's
compilation, reported apart), two warm-up steps, then --windows windows of --window_steps steps, each step
waiting for its loss; the median window gives steps/s and examples/s. Peak device memory comes from JAX's
memory_stats where the device reports it (the process's peak so far: it bounds each case rather than isolating
it). Cases run in order of the flags and each result is written to DIR/bench_keras_jax.json as soon as it
exists, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import types
from typing import Any, Sequence

import numpy as np

RESULTS = "bench_keras_jax.json"


def write_config(path: str, preset: str) -> dict[str, Any]:
    """The preset resolved by TrainConfig (needs TensorFlow) plus the model's input shape, as JSON at `path`."""
    from trainer.data import discovery
    from trainer.recipe import config

    cfg = config.preset_config(preset)
    resolved = {**dataclasses.asdict(cfg), "input_shape": list(discovery.input_shape(cfg))}
    with open(path, "w") as f:
        json.dump(resolved, f, indent=2, sort_keys=True)
    return resolved


def load_config(path: str) -> types.SimpleNamespace:
    """The JSON of write_config as the attributes trainer.model.network reads (nested sections stay dicts)."""
    with open(path) as f:
        return types.SimpleNamespace(**json.load(f))


def time_model(cfg: types.SimpleNamespace, batch_size: int, precision: str, windows: int,
               window_steps: int, seed: int = 0) -> dict[str, Any]:
    """Train-step speed of cfg's classifier at this batch size and dtype policy, on device-resident inputs."""
    import keras

    from trainer.model import network

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        shape = tuple(cfg.input_shape)  # (n_mels, frames, 1)
        n_mels = shape[0]
        net = network.build_model(cfg, shape, (np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)))
        network.compile_model(net, cfg, steps_per_epoch=max(1, windows * window_steps))
        rng = np.random.default_rng(seed)
        # On the device once (the backend's default device), so no step waits for a host-to-device copy.
        x = keras.ops.convert_to_tensor(rng.standard_normal((batch_size, *shape), dtype=np.float32))  # [B, n_mels, frames, 1]
        labels = (rng.random((batch_size, cfg.num_classes)) < 0.1).astype(np.float32)
        y = keras.ops.convert_to_tensor(np.concatenate([labels, np.ones_like(labels)], axis=1))  # [B, 2C]: labels | weights
        start = time.perf_counter()
        net.train_on_batch(x, y)  # traces and XLA-compiles the step
        first_step_s = time.perf_counter() - start
        for _ in range(2):
            net.train_on_batch(x, y)
        window_s = []
        for _ in range(windows):
            start = time.perf_counter()
            for _ in range(window_steps):
                loss = net.train_on_batch(x, y)  # a float: waits for the step
            window_s.append(time.perf_counter() - start)
        steps_per_s = window_steps / statistics.median(window_s)
        stats = _device_memory_stats()
        return {"batch_size": batch_size, "precision": precision, "first_step_s": round(first_step_s, 2),
                "steps_per_s": round(steps_per_s, 2), "examples_per_s": round(steps_per_s * batch_size, 1),
                "step_ms": round(1000 / steps_per_s, 2), "window_s": [round(s, 3) for s in window_s],
                "peak_device_mib": round(stats["peak_bytes_in_use"] / 2**20) if "peak_bytes_in_use" in stats else None,
                "params": int(net.count_params()), "final_loss": float(np.asarray(loss).reshape(-1)[0])}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _device_memory_stats() -> dict[str, Any]:
    """JAX's memory_stats of the first device ({} on other backends, or where the device reports none)."""
    import keras

    if keras.backend.backend() != "jax":
        return {}
    import jax

    return jax.devices()[0].memory_stats() or {}


def _augment_worker(augment: dict[str, Any], sample_rate: int, window: int, seconds: float, seed: int) -> int:
    """Windows augmented by one process in `seconds` (the chain tf.numpy_function calls per element)."""
    from trainer.augment import chain

    augmentation = chain.build_augmentation(chain.AugmentConfig(**augment), sample_rate, seed)
    rng = np.random.default_rng(seed)
    y = (0.05 * rng.standard_normal(window)).astype(np.float32)  # [window]; the chain's cost ignores content
    chain.augment_with_seed(augmentation, y, seed)  # builds the noise bank outside the timed loop
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        chain.augment_with_seed(augmentation, y, seed + done)
        done += 1
    return done


def time_augmentation(cfg: types.SimpleNamespace, processes: int, seconds: float) -> dict[str, Any]:
    """Windows/s of the preset's numpy augmentation chain on `processes` processes running at once."""
    sample_rate = int(cfg.mel["sample_rate"])
    window = int(round(cfg.window_seconds * sample_rate))
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold a GPU runtime
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        counts = list(pool.map(_augment_worker, [cfg.augment] * processes, [sample_rate] * processes,
                               [window] * processes, [seconds] * processes, range(processes)))
    total = sum(counts) / seconds
    return {"processes": processes, "window_seconds": cfg.window_seconds, "windows_per_s": round(total, 1),
            "windows_per_s_per_process": round(total / processes, 1), "ms_per_window": round(1000 * processes / total, 2)}


def machine() -> dict[str, Any]:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        first = jax.devices()[0]
        device, versions = f"{first.platform}: {getattr(first, 'device_kind', first)}", {"jax": jax.__version__}
    else:
        device, versions = "not JAX: the backend's default device", {}
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "platform": platform.platform(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), **versions, "numpy": np.__version__, "device": device}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_keras_jax", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write_config", help="write the preset's resolved config here (needs TensorFlow) and exit")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--config", help="a --write_config JSON to time")
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_float16", "mixed_bfloat16"],
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window_steps", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 8, 16])
    parser.add_argument("--augment_seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    if not args.write_config and not args.config:
        parser.error("give --write_config (here) or --config (there)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_config:
        write_config(args.write_config, args.preset)
        print(f"wrote {args.write_config}")
        return 0
    cfg = load_config(args.config)
    os.makedirs(args.out, exist_ok=True)
    results: dict[str, Any] = {"config": args.config, "preset": cfg.from_preset, "input_shape": cfg.input_shape,
                               "augmentation": [], "model": []}

    def save() -> None:
        with open(os.path.join(args.out, RESULTS), "w") as f:
            json.dump(results, f, indent=2)

    for processes in args.processes:  # before JAX starts, so the host's cores are the chain's alone
        results["augmentation"].append(row := time_augmentation(cfg, processes, args.augment_seconds))
        print("augmentation", row, flush=True)
        save()
    results["machine"] = machine()
    print(results["machine"], flush=True)
    for batch_size in args.batch_sizes:
        for precision in args.precisions:
            try:
                row = time_model(cfg, batch_size, precision, args.windows, args.window_steps)
            except Exception as e:  # noqa: BLE001 -- keep the other cases' figures; the error is reported
                row = {"batch_size": batch_size, "precision": precision, "error": f"{type(e).__name__}: {e}"}
            results["model"].append(row)
            print("model", row, flush=True)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
