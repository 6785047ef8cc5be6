"""Throughput and memory of the Beam sharding job against a plain single-process loop doing the same work.

    python -m benchmarks.bench_shards [--num_train 128] [--num_test 224] [--duration 60] [--small 8]
        [--repeats 3] [--rfcx_duration 20] [--rfcx_repeats 3] [--beam_args "--direct_num_workers 2 ..."]
        [--out bench_out]

Generates (once, under OUT) three datasets with the demo's code (pipeline.demo_data, partial labels):

* full: --num_train + --num_test recordings of --duration s (the default 128 + 224 recordings of 60 s
  has RFCX's test/train ratio: 1,132 labelled train and 1,992 test recordings);
* small: a 1/--small slice of it with the same ratio;
* rfcx: RFCX's train set in size: 1,216 tp and 7,781 fp rows over 4,727 recordings (1,132 with tp
  rows, 3,958 with fp rows), recordings of --rfcx_duration s (RFCX's last 60 s; shorter keeps the
  run time bounded while the row counts and the 10 s slices stay RFCX's), no test recordings.

Each side runs as its own process, start-up included, with the job's defaults (10 s slices, 5 folds,
2 background slices per training recording):

* beam: `python -m pipeline.shards` with its defaults on the DirectRunner (one worker process per
  core from 100 recordings on, in-process below; --beam_args adds Beam options, e.g.
  "--direct_num_workers 2 --direct_running_mode multi_processing" as this benchmark used before 2026-12-04);
* loop: this module with --loop: the same decode + tp/fp/background slices + serialize
  (pipeline.examples.process over the driver's tasks) and a TFRecord file per (fold, kind), one
  recording after another, without TensorFlow (the job does not import it either; TFRecord framing
  is 3 lines, see _frame).

Reports examples/s (train slices of every kind + test recordings), CPU seconds (less sensitive to
other load than wall time) and the peak summed RSS of each process tree; from the small and full
sizes each side's fixed overhead (s) and marginal cost (s per example), so the size where Beam
overtakes the loop can be read off; and Beam's peak memory over the three sizes, which should not
grow with the number of recordings. Each case takes the median of --repeats (RFCX-sized:
--rfcx_repeats) interleaved runs per side (beam, loop, beam, loop, ...), each with the 1-minute load
average before it (other processes on the machine slow both sides; the load says how much). Prints
a table and writes OUT/bench_shards.json. Targets: beam >= 1x the loop on the full dataset and
>= 1.5x on the RFCX-sized one (on an otherwise idle machine).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import struct
import subprocess
import sys
import threading
import time
from typing import Sequence

import google_crc32c
import numpy as np

from core import schema
from pipeline import demo_data, examples, shards, transforms
from pipeline.config import ShardsConfig
from pipeline.demo_data import write_demo_dataset

# RFCX's train set (Kaggle, rfcx-species-audio-detection): train_tp.csv rows and the recordings
# they name, the same for train_fp.csv, and the train recordings (every one named by either CSV).
RFCX_TP_ROWS, RFCX_TP_RECORDINGS = 1216, 1132
RFCX_FP_ROWS, RFCX_FP_RECORDINGS = 7781, 3958
RFCX_TRAIN = 4727


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C of `data`, little-endian."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _frame(record: bytes) -> bytes:
    """One TFRecord: length, CRC of the length, data, CRC of the data."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


def loop_shards(data_dir: str, out_dir: str) -> dict:
    """The plain loop: every task of the job, processed and written in order by this process.

    One file per (fold, slice kind) and one for the test examples, as the job's partitions.
    """
    cfg = ShardsConfig(data_dir, out_dir)
    inputs = shards.load_inputs(cfg)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    counts = {"train_examples": 0, "test_examples": 0, "rejected": 0, **{k: 0 for k in schema.SLICE_KINDS}}
    for task in inputs.tasks:
        # The job's own reader (Beam FileSystems, called only when something needs the audio): a
        # missing file becomes a dead letter here as in the job.
        outcome = examples.process(task, lambda: transforms.read_bytes(task.path), cfg)
        for ex in outcome.examples:
            key = (ex.fold, ex.kind)
            if key not in files:
                files[key] = open(os.path.join(out_dir, f"fold{ex.fold}-{ex.kind}.tfrecord"), "wb")
            files[key].write(_frame(ex.serialized))
            if task.kind == examples.TRAIN:
                counts["train_examples"] += 1
                counts[ex.kind] += 1
            else:
                counts["test_examples"] += 1
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


def _write_planned(args: tuple) -> tuple[list[dict], list[dict]]:
    return demo_data.write_recording(*args)


def rfcx_sized_plans(seed: int = 0) -> list[demo_data.RecordingPlan]:
    """Train recordings with RFCX's row counts: RFCX_TP_ROWS tp rows on RFCX_TP_RECORDINGS recordings,
    RFCX_FP_ROWS fp rows (look-alikes) on RFCX_FP_RECORDINGS, RFCX_TRAIN recordings in all.

    Partial labels as in RFCX (one tp row per species per recording): the first RFCX_TP_RECORDINGS
    recordings hold one species each, RFCX_TP_ROWS - RFCX_TP_RECORDINGS of them a second one; the
    last RFCX_FP_RECORDINGS hold look-alikes, one each plus the rest spread at random.
    """
    rng = np.random.default_rng(seed)
    ids = demo_data.recording_ids(rng, RFCX_TRAIN)
    two_species = set(rng.choice(RFCX_TP_RECORDINGS, RFCX_TP_ROWS - RFCX_TP_RECORDINGS, replace=False).tolist())
    lookalikes = np.zeros(RFCX_TRAIN, np.int64)
    fp_first = RFCX_TRAIN - RFCX_FP_RECORDINGS
    lookalikes[fp_first:] = 1 + rng.multinomial(RFCX_FP_ROWS - RFCX_FP_RECORDINGS,
                                                np.full(RFCX_FP_RECORDINGS, 1 / RFCX_FP_RECORDINGS))
    plans = []
    for i, rid in enumerate(ids):
        species: tuple[int, ...] = ()
        if i < RFCX_TP_RECORDINGS:
            species = (i % demo_data.NUM_SPECIES,)
            if i in two_species:
                species += ((i + 1 + int(rng.integers(0, demo_data.NUM_SPECIES - 1))) % demo_data.NUM_SPECIES,)
        plans.append(demo_data.RecordingPlan(rid, species, int(lookalikes[i]), True))
    return plans


def rfcx_sized_dataset(out: str, duration: float, workers: int) -> str:
    """Writes (once) the RFCX-sized train set of `rfcx_sized_plans` with the demo's own synthesis."""
    data_dir = os.path.join(out, f"bench_data_rfcx_{RFCX_TRAIN}x{duration:g}s")
    if os.path.exists(os.path.join(data_dir, "sample_submission.csv")):
        return data_dir
    plans = rfcx_sized_plans()
    os.makedirs(os.path.join(data_dir, "train"), exist_ok=True)
    os.makedirs(os.path.join(data_dir, "test"), exist_ok=True)
    jobs = [(data_dir, plan, i, duration, 0, 48000, demo_data.PARTIAL) for i, plan in enumerate(plans)]
    with multiprocessing.Pool(workers) as pool:  # each recording's randomness depends on its index only
        rows = pool.map(_write_planned, jobs, chunksize=16)
    summary = demo_data.write_dataset(data_dir, plans, rows)  # sample_submission.csv last: marks it complete
    if (summary["tp_rows"], summary["fp_rows"]) != (RFCX_TP_ROWS, RFCX_FP_ROWS):
        raise RuntimeError(f"RFCX-sized data has {summary}, not {RFCX_TP_ROWS} tp + {RFCX_FP_ROWS} fp rows")
    return data_dir


def _beam_argv(data_dir: str, out: str, beam_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "pipeline.shards", "--data_dir", data_dir, "--output_dir", out, "--overwrite",
            "--runner", "DirectRunner", *beam_args]


def _measure(data_dir: str, out: str, repeats: int, read_back: bool = True, beam_args: Sequence[str] = ()) -> dict:
    """Median wall time (its run's CPU time) and the max peak RSS of each side on one dataset, runs interleaved.

    Every run's wall time, CPU time and the load average before it are kept in the report. The two
    sides must agree on the examples of every kind; `read_back` also reads the loop's records back
    with TensorFlow (its framing). Both outputs are deleted afterwards.
    """
    beam_out, loop_out = os.path.join(out, "bench_shards_beam"), os.path.join(out, "bench_shards_loop")
    runs: dict[str, list[dict]] = {"beam": [], "loop": []}
    manifest: dict = {}
    for i in range(repeats):
        # Each output is deleted once read (the RFCX-sized one takes 17 GB); the loop's last one is kept
        # for read_back.
        load = os.getloadavg()[0]
        runs["beam"].append({**_timed_process(_beam_argv(data_dir, beam_out, beam_args)), "load_1m_before": load})
        manifest = json.load(open(os.path.join(beam_out, "manifest.json")))
        shutil.rmtree(beam_out)
        shutil.rmtree(loop_out, ignore_errors=True)
        load = os.getloadavg()[0]
        runs["loop"].append({**_timed_process([sys.executable, "-m", "benchmarks.bench_shards", "--loop", data_dir,
                                               loop_out]), "load_1m_before": load})
        if i < repeats - 1 or not read_back:
            shutil.rmtree(loop_out)
        for side in ("beam", "loop"):  # as it happens, for a run cut short
            r = runs[side][-1]
            print(f"  {os.path.basename(data_dir)} {side}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, "
                  f"load {r['load_1m_before']:.1f} before", file=sys.stderr, flush=True)
    counts = json.loads(runs["loop"][-1]["stdout"].strip().splitlines()[-1])
    job = manifest["counts"]
    mismatch = [k for k in schema.SLICE_KINDS if counts[k] != job["train_examples_per_kind"][k]]
    if mismatch or (counts["train_examples"], counts["test_examples"]) != (job["train_examples"],
                                                                           job["test_examples"]):
        raise RuntimeError(f"loop and job disagree: {counts} vs {job}")
    if read_back:
        loop_records = _count_records([os.path.join(loop_out, n) for n in sorted(os.listdir(loop_out))])
        if loop_records != counts["train_examples"] + counts["test_examples"]:
            raise RuntimeError(f"the loop wrote {counts}, TensorFlow reads {loop_records} records")
    shutil.rmtree(loop_out, ignore_errors=True)
    n_examples = job["train_examples"] + job["test_examples"]
    result = {"tp_rows": job["tp_rows"], "fp_rows": job["fp_rows"], "training_recordings": job["training_recordings"],
              "test_files": job["test_files"], "examples": n_examples,
              "examples_per_kind": job["train_examples_per_kind"], "background_rejected": job["background_rejected"]}
    for name, rs in runs.items():
        median = sorted(rs, key=lambda r: r["wall_s"])[(len(rs) - 1) // 2]
        result[name] = {"wall_s": median["wall_s"], "wall_s_all": [r["wall_s"] for r in rs],
                        "cpu_s_all": [r["cpu_s"] for r in rs], "load_1m_before_all": [r["load_1m_before"] for r in rs],
                        "examples_per_s": n_examples / median["wall_s"], "cpu_s": median["cpu_s"],
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)}
    return result


def _fit(small: dict, full: dict, side: str) -> dict:
    """Fixed overhead (s) and marginal cost (s per example) through the two sizes' wall times."""
    per_example = (full[side]["wall_s"] - small[side]["wall_s"]) / (full["examples"] - small["examples"])
    return {"fixed_s": full[side]["wall_s"] - per_example * full["examples"], "s_per_example": per_example}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_train", type=int, default=128)
    parser.add_argument("--num_test", type=int, default=224)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--small", type=int, default=8, help="the small dataset is 1/SMALL of the full one")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and size; the median is used")
    parser.add_argument("--rfcx_repeats", type=int, default=3, help="runs per side of the RFCX-sized case")
    parser.add_argument("--beam_args", default="", help="Beam options added to the job's command line")
    parser.add_argument("--rfcx_duration", type=float, default=20.0,
                        help="seconds per recording of the RFCX-sized case (RFCX: 60); 0 skips that case")
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--loop", nargs=2, metavar=("DATA_DIR", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:  # child mode: the plain loop
        print(json.dumps(loop_shards(*args.loop)))
        return {}

    started = time.perf_counter()
    sizes = {"small": (max(5, args.num_train // args.small), max(1, args.num_test // args.small)),
             "full": (args.num_train, args.num_test)}
    data_dirs = {k: _dataset(args.out, n_train, n_test, args.duration) for k, (n_train, n_test) in sizes.items()}
    durations = {k: args.duration for k in sizes}
    if args.rfcx_duration > 0:
        generate_start = time.perf_counter()
        data_dirs["rfcx"] = rfcx_sized_dataset(args.out, args.rfcx_duration, os.cpu_count() or 1)
        generate_s = time.perf_counter() - generate_start
        sizes["rfcx"] = (RFCX_TRAIN, 0)
        durations["rfcx"] = args.rfcx_duration
    load_before = os.getloadavg()[0]
    measure_start = time.perf_counter()
    # The RFCX-sized case's outputs (~17 GB per side) are not read back with TensorFlow (the small
    # cases check the framing).
    results = {k: _measure(d, args.out, args.repeats if k != "rfcx" else args.rfcx_repeats, read_back=k != "rfcx",
                           beam_args=args.beam_args.split()) for k, d in data_dirs.items()}
    full = results["full"]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    # Other processes compete for the same cores: the load says how idle the machine was.
                    "load_average_1m_before": load_before, "load_average_1m_after": os.getloadavg()[0]},
        "datasets": {k: {"train_recordings": sizes[k][0], "test_recordings": sizes[k][1],
                         "duration_s": durations[k], **{f: r[f] for f in ("tp_rows", "fp_rows", "examples",
                                                                          "examples_per_kind",
                                                                          "background_rejected")}}
                     for k, r in results.items()},
        "results": results,
        "fit": {side: _fit(results["small"], full, side) for side in ("beam", "loop")},
        "seconds": {"measuring": time.perf_counter() - measure_start, "total": time.perf_counter() - started},
    }
    if "rfcx" in results:
        report["seconds"]["generating_rfcx_data"] = generate_s
    report["speedup"] = {k: r["beam"]["examples_per_s"] / r["loop"]["examples_per_s"] for k, r in results.items()}
    report["beam_args"] = args.beam_args
    report["target_met"] = {"full >= 1x": report["speedup"]["full"] >= 1.0}
    if "rfcx" in report["speedup"]:
        report["target_met"]["rfcx >= 1.5x"] = report["speedup"]["rfcx"] >= 1.5
    peaks = [r["beam"]["peak_rss_mib"] for r in results.values()]
    report["beam_peak_rss_mib_range"] = [min(peaks), max(peaks)]
    fit = report["fit"]
    extra = fit["loop"]["s_per_example"] - fit["beam"]["s_per_example"]
    report["break_even_examples"] = (fit["beam"]["fixed_s"] - fit["loop"]["fixed_s"]) / extra if extra > 0 else None
    print(f"{'':12} {'recs':>6} {'tp':>6} {'fp':>6} {'examples':>9} {'wall s':>8} {'ex/s':>7} {'CPU s':>8} "
          f"{'peak RSS MiB':>13} {'load before runs':>17}")
    for size, r in results.items():
        for name in ("beam", "loop"):
            print(f"{name + ' ' + size:12} {sizes[size][0] + sizes[size][1]:6d} {r['tp_rows']:6d} {r['fp_rows']:6d} "
                  f"{r['examples']:9d} {r[name]['wall_s']:8.1f} {r[name]['examples_per_s']:7.1f} "
                  f"{r[name]['cpu_s']:8.1f} {r[name]['peak_rss_mib']:13.0f} "
                  f"{min(r[name]['load_1m_before_all']):8.1f}-{max(r[name]['load_1m_before_all']):.1f}")
    for name in ("beam", "loop"):
        print(f"{name}: fixed overhead {fit[name]['fixed_s']:.1f} s, marginal {1000 * fit[name]['s_per_example']:.1f} "
              f"ms per example (small -> full)")
    even = report["break_even_examples"]
    print("beam/loop = " + ", ".join(f"{v:.2f}x ({k})" for k, v in report["speedup"].items()) +
          f" (targets: {', '.join(f'{k} ' + ('met' if v else 'NOT met') for k, v in report['target_met'].items())}"
          f"); break-even at "
          f"{'never' if even is None else f'{even:.0f} examples'}; Beam peak RSS {min(peaks):.0f}-{max(peaks):.0f} "
          f"MiB over {min(s[0] + s[1] for s in sizes.values())}-{max(s[0] + s[1] for s in sizes.values())} "
          f"recordings; {os.cpu_count()} CPUs, load average {load_before:.1f} before; "
          f"{report['seconds']['total']:.0f} s in all")
    with open(os.path.join(args.out, "bench_shards.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
