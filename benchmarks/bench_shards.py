"""Throughput of the Beam sharding job against a plain single-process loop doing the same work.

    python -m benchmarks.bench_shards [--num_train 128] [--num_test 224] [--duration 60] [--small 8]
        [--repeats 3] [--out bench_out]

Generates (once) two demo datasets under OUT: the full one and a 1/--small slice of it with the same
test/train ratio (the default 128 + 224 recordings of 60 s is 1/9 of the real RFCX set: 1,132
labelled train and 1,992 test recordings). In one run it times, each as its own process, start-up
included:

* beam: `python -m pipeline.shards` on the DirectRunner, 2 workers, multi_processing;
* loop: this module with --loop: the same decode + crop + serialize (pipeline.examples.process over
  the driver's tasks) and a TFRecord file per fold, one recording after another, without
  TensorFlow (the job does not import it either; TFRecord framing is 3 lines, see _frame).

Reports tp rows/s on the full dataset, CPU seconds (less sensitive to other load than wall time) and
the peak summed RSS of each process tree, and from the two
sizes each side's fixed overhead (s) and marginal cost (s per tp row, test recordings included in
their real proportion), so the size where Beam overtakes the loop can be read off. Prints a table
and writes OUT/bench_shards.json. Target: beam rows/s >= loop rows/s on the full dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from typing import Sequence

import google_crc32c

from pipeline import examples, shards, transforms
from pipeline.config import ShardsConfig
from pipeline.demo_data import write_demo_dataset


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C of `data`, little-endian."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _frame(record: bytes) -> bytes:
    """One TFRecord: length, CRC of the length, data, CRC of the data."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


def loop_shards(data_dir: str, out_dir: str) -> dict:
    """The plain loop: every task of the job, processed and written in order by this process."""
    cfg = ShardsConfig(data_dir, out_dir)
    inputs = shards.load_inputs(cfg)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    counts = {"train_examples": 0, "test_examples": 0, "rejected": 0}
    for task in inputs.tasks:
        # The job's own reader (Beam FileSystems, called only when a row needs the audio): a missing
        # file becomes a dead letter here as in the job.
        outcome = examples.process(task, lambda: transforms.read_bytes(task.path), cfg)
        for ex in outcome.examples:
            if ex.fold not in files:
                files[ex.fold] = open(os.path.join(out_dir, f"fold{ex.fold}.tfrecord"), "wb")
            files[ex.fold].write(_frame(ex.serialized))
            counts["train_examples" if task.kind == examples.TRAIN else "test_examples"] += 1
        counts["rejected"] += len(outcome.rejections)
    for f in files.values():
        f.close()
    return counts


def _count_records(paths: list[str]) -> int:
    """Records TF reads back (checks the loop's framing; run after the timings)."""
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset(paths))


def _tree_rss_bytes(root: int) -> int:
    """Summed RSS of `root` and its descendants, from /proc (shared pages count once per process)."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue  # the process just ended
        parents.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += parents.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def _timed_process(argv: list[str]) -> dict:
    """Runs argv; wall and CPU seconds and peak summed RSS (MiB) of its process tree.

    The RSS is polled every 0.1 s over the whole tree, because the job's workers run at the same
    time (ru_maxrss gives one process's peak only, and after a fork it starts from this process's).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reaps the child itself, so read its pipes from threads rather than communicate().
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: streams.__setitem__(n, s.read()))
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _tree_rss_bytes(proc.pid))
        time.sleep(0.1)
    for r in readers:
        r.join()
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(streams["stderr"].decode(errors="replace")[-3000:])
        raise RuntimeError(f"benchmark step failed: {' '.join(argv)}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": peak / 2**20,
            "stdout": streams["stdout"].decode()}


def _dataset(out: str, num_train: int, num_test: int, duration: float) -> str:
    data_dir = os.path.join(out, f"bench_data_{num_train}+{num_test}x{duration:g}s")
    if not os.path.exists(os.path.join(data_dir, "sample_submission.csv")):
        write_demo_dataset(data_dir, num_train=num_train, num_test=num_test, duration_s=duration)
    return data_dir


def _measure(data_dir: str, out: str, repeats: int) -> dict:
    """Fastest wall time, its CPU time and the max peak RSS of each side on one dataset, runs interleaved.

    Other processes on the machine only ever add time, so the fastest of the repeats is the least
    disturbed estimate for both sides (as timeit does); every run's wall time is kept in the report.
    """
    beam_out, loop_out = os.path.join(out, "bench_shards_beam"), os.path.join(out, "bench_shards_loop")
    runs: dict[str, list[dict]] = {"beam": [], "loop": []}
    for _ in range(repeats):
        runs["beam"].append(_timed_process(
            [sys.executable, "-m", "pipeline.shards", "--data_dir", data_dir, "--output_dir", beam_out,
             "--overwrite", "--runner", "DirectRunner", "--direct_num_workers", "2",
             "--direct_running_mode", "multi_processing"]))
        runs["loop"].append(_timed_process([sys.executable, "-m", "benchmarks.bench_shards", "--loop", data_dir,
                                            loop_out]))
    counts = json.loads(runs["loop"][-1]["stdout"].strip().splitlines()[-1])
    manifest = json.load(open(os.path.join(beam_out, "manifest.json")))
    loop_records = _count_records([os.path.join(loop_out, n) for n in sorted(os.listdir(loop_out))])
    job = manifest["counts"]
    if (counts["train_examples"], counts["test_examples"]) != (job["train_examples"], job["test_examples"]) or \
            loop_records != counts["train_examples"] + counts["test_examples"]:
        raise RuntimeError(f"loop and job disagree: {counts}, {loop_records} records read vs {job}")
    result = {"tp_rows": job["tp_rows"], "test_files": job["test_files"]}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["wall_s"])
        result[name] = {"wall_s": best["wall_s"], "wall_s_all": [r["wall_s"] for r in rs],
                        "rows_per_s": job["tp_rows"] / best["wall_s"], "cpu_s": best["cpu_s"],
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)}
    return result


def _fit(small: dict, full: dict, side: str) -> dict:
    """Fixed overhead (s) and marginal cost (s per tp row) through the two sizes' wall times."""
    per_row = (full[side]["wall_s"] - small[side]["wall_s"]) / (full["tp_rows"] - small["tp_rows"])
    return {"fixed_s": full[side]["wall_s"] - per_row * full["tp_rows"], "s_per_row": per_row}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_train", type=int, default=128)
    parser.add_argument("--num_test", type=int, default=224)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--small", type=int, default=8, help="the small dataset is 1/SMALL of the full one")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and size; the fastest is used")
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--loop", nargs=2, metavar=("DATA_DIR", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:  # child mode: the plain loop
        print(json.dumps(loop_shards(*args.loop)))
        return {}

    sizes = {"small": (max(5, args.num_train // args.small), max(1, args.num_test // args.small)),
             "full": (args.num_train, args.num_test)}
    data_dirs = {k: _dataset(args.out, n_train, n_test, args.duration) for k, (n_train, n_test) in sizes.items()}
    load_before = os.getloadavg()[0]
    results = {k: _measure(d, args.out, args.repeats) for k, d in data_dirs.items()}
    full = results["full"]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    # Other processes compete for the same cores: the load says how idle the machine was.
                    "load_average_1m_before": load_before, "load_average_1m_after": os.getloadavg()[0]},
        "datasets": {k: {"train_recordings": sizes[k][0], "test_recordings": sizes[k][1],
                         "duration_s": args.duration, "tp_rows": r["tp_rows"]} for k, r in results.items()},
        "results": results,
        "fit": {side: _fit(results["small"], full, side) for side in ("beam", "loop")},
    }
    report["speedup"] = full["beam"]["rows_per_s"] / full["loop"]["rows_per_s"]
    report["target_met"] = report["speedup"] >= 1.0
    fit = report["fit"]
    extra = fit["loop"]["s_per_row"] - fit["beam"]["s_per_row"]
    report["break_even_tp_rows"] = (fit["beam"]["fixed_s"] - fit["loop"]["fixed_s"]) / extra if extra > 0 else None
    print(f"{'':12} {'tp rows':>8} {'wall s':>8} {'rows/s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    for size, r in results.items():
        for name in ("beam", "loop"):
            print(f"{name + ' ' + size:12} {r['tp_rows']:8d} {r[name]['wall_s']:8.1f} {r[name]['rows_per_s']:8.2f} "
                  f"{r[name]['cpu_s']:8.1f} {r[name]['peak_rss_mib']:13.0f}")
    for name in ("beam", "loop"):
        print(f"{name}: fixed overhead {fit[name]['fixed_s']:.1f} s, marginal {1000 * fit[name]['s_per_row']:.0f} ms "
              f"per tp row (test recordings included in proportion)")
    even = report["break_even_tp_rows"]
    print(f"beam/loop = {report['speedup']:.2f}x on {full['tp_rows']} tp rows "
          f"({sizes['full'][0]}+{sizes['full'][1]} recordings of {args.duration:g} s) "
          f"(target >= 1x: {'met' if report['target_met'] else 'NOT met'}); break-even at "
          f"{'never' if even is None else f'{even:.0f} tp rows'}; {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before")
    with open(os.path.join(args.out, "bench_shards.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
