"""Throughput of the Beam sharding job against a plain single-process loop doing the same work.

    python -m benchmarks.bench_shards [--num_train 96] [--num_test 16] [--duration 60] [--out bench_out]

Generates (once) a demo dataset under OUT/bench_data, then in one run times, each as its own process:

* beam: `python -m pipeline.shards` on the DirectRunner, 2 workers, multi_processing;
* loop: this module with --loop: the same decode + crop + serialize + TFRecord write
  (pipeline.examples.process over the driver's tasks), one recording after another.

Reports tp rows/s (wall time of the whole process, start-up included) and each process tree's peak
RSS (os.wait4, which covers the process and the children it waited for); prints a table and writes
OUT/bench_shards.json. Target: beam rows/s >= loop rows/s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Sequence

import tensorflow as tf

from pipeline import examples, shards
from pipeline.config import ShardsConfig
from pipeline.demo_data import write_demo_dataset


def loop_shards(data_dir: str, out_dir: str) -> dict:
    """The plain loop: every task of the job, processed and written in order by this process."""
    cfg = ShardsConfig(data_dir, out_dir)
    inputs = shards.load_inputs(cfg)
    os.makedirs(out_dir, exist_ok=True)
    writers: dict[int, tf.io.TFRecordWriter] = {}
    counts = {"train_examples": 0, "test_examples": 0, "rejected": 0}
    for task in inputs.tasks:
        outcome = examples.process(task, lambda: open(task.path, "rb").read(), cfg)
        for ex in outcome.examples:
            if ex.fold not in writers:
                writers[ex.fold] = tf.io.TFRecordWriter(os.path.join(out_dir, f"fold{ex.fold}.tfrecord"))
            writers[ex.fold].write(ex.serialized)
            counts["train_examples" if task.kind == examples.TRAIN else "test_examples"] += 1
        counts["rejected"] += len(outcome.rejections)
    for w in writers.values():
        w.close()
    return counts


def _timed_process(argv: list[str]) -> dict:
    """Runs argv; wall seconds and peak RSS (MiB) of its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reaps the child itself, so read its pipes from threads rather than communicate().
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: streams.__setitem__(n, s.read()))
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for r in readers:
        r.join()
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(streams["stderr"].decode(errors="replace")[-3000:])
        raise RuntimeError(f"benchmark step failed: {' '.join(argv)}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": streams["stdout"].decode()}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_train", type=int, default=96)
    parser.add_argument("--num_test", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--loop", nargs=2, metavar=("DATA_DIR", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:  # child mode: the plain loop
        print(json.dumps(loop_shards(*args.loop)))
        return {}

    data_dir = os.path.join(args.out, f"bench_data_{args.num_train}x{args.duration:g}s")
    if not os.path.exists(os.path.join(data_dir, "sample_submission.csv")):
        write_demo_dataset(data_dir, num_train=args.num_train, num_test=args.num_test, duration_s=args.duration)
    load_before = os.getloadavg()[0]
    beam = _timed_process([sys.executable, "-m", "pipeline.shards", "--data_dir", data_dir,
                           "--output_dir", os.path.join(args.out, "bench_shards_beam"), "--overwrite",
                           "--runner", "DirectRunner", "--direct_num_workers", "2",
                           "--direct_running_mode", "multi_processing"])
    loop = _timed_process([sys.executable, "-m", "benchmarks.bench_shards", "--loop", data_dir,
                           os.path.join(args.out, "bench_shards_loop")])
    counts = json.loads(loop["stdout"].strip().splitlines()[-1])
    manifest = json.load(open(os.path.join(args.out, "bench_shards_beam", "manifest.json")))
    tp_rows = manifest["counts"]["tp_rows"]
    if counts["train_examples"] != manifest["counts"]["train_examples"]:
        raise RuntimeError(f"loop and job disagree: {counts} vs {manifest['counts']}")
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    # Other processes compete for the same cores: the load says how idle the machine was.
                    "load_average_1m_before": load_before, "load_average_1m_after": os.getloadavg()[0]},
        "dataset": {"train_recordings": args.num_train, "test_recordings": args.num_test,
                    "duration_s": args.duration, "tp_rows": tp_rows},
        "beam": {"wall_s": beam["wall_s"], "rows_per_s": tp_rows / beam["wall_s"],
                 "peak_rss_mib": beam["peak_rss_mib"]},
        "loop": {"wall_s": loop["wall_s"], "rows_per_s": tp_rows / loop["wall_s"],
                 "peak_rss_mib": loop["peak_rss_mib"]},
    }
    report["speedup"] = report["beam"]["rows_per_s"] / report["loop"]["rows_per_s"]
    report["target_met"] = report["speedup"] >= 1.0
    print(f"{'':6} {'wall s':>8} {'rows/s':>8} {'peak RSS MiB':>13}")
    for name in ("beam", "loop"):
        r = report[name]
        print(f"{name:6} {r['wall_s']:8.1f} {r['rows_per_s']:8.2f} {r['peak_rss_mib']:13.0f}")
    print(f"beam/loop = {report['speedup']:.2f}x (target >= 1x: {'met' if report['target_met'] else 'NOT met'}); "
          f"{tp_rows} tp rows, {args.num_train}+{args.num_test} recordings of {args.duration:g} s, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before")
    with open(os.path.join(args.out, "bench_shards.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
