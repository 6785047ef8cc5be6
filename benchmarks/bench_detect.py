"""Real-time factor of the Beam detection job against a plain single-process loop doing the same work.

    python -m benchmarks.bench_detect [--model EXPORT] [--num_test 96] [--duration 60] [--sample_rate 48000]
        [--out bench_out]

Recordings: the demo generator's test set (pipeline.demo_data: --num_test FLAC files of --duration s at
--sample_rate, made once under OUT). Model: --model (an export of `make export`), else a fake export
with the RFCX shape (48 kHz, 10 s windows, 5 s stride, 24 species; tests/helpers/fake_export.py: a
spectrum-band model whose compute is small, so the figures then measure the job's plumbing: decode,
windowing, TF calls, writes).

Each side runs as its own process, start-up (TensorFlow import, model load) included:

* beam: `python -m detect.run` on the DirectRunner, 2 workers, multi_processing;
* loop: this module with --loop: the same per-recording work (detect.scoring + the Raven table and the
  Parquet part written, as the job's DoFn does) one recording after another, then detections.csv.

Reports seconds of audio per second of wall time (real-time factor), CPU seconds, and checks that both
sides wrote the same detections.csv. Prints a table and writes OUT/bench_detect.json. Target: beam
real-time factor >= 1.6x the loop's on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import pandas as pd

from benchmarks import common


def _dataset(out: str, num_test: int, duration: float, sample_rate: int) -> str:
    from pipeline.demo_data import write_demo_dataset

    data = os.path.join(out, f"bench_detect_data_{num_test}x{duration:g}s_{sample_rate}")
    if not os.path.exists(os.path.join(data, "sample_submission.csv")):
        write_demo_dataset(data, num_train=1, num_test=num_test, duration_s=duration, sample_rate=sample_rate)
    return data


def _fake_model(out: str) -> str:
    from tests.helpers.fake_export import write_fake_export

    path = os.path.join(out, "bench_detect_fake_export")
    if not os.path.exists(os.path.join(path, "metadata.json")):
        write_fake_export(path, sample_rate=48000, window_samples=480000, stride_samples=240000, num_classes=24,
                          embedding_size=64)
    return path


def loop(model_dir: str, audio_dir: str, out: str) -> None:
    """The job's per-recording work in one process, one recording after another."""
    from core import export_layout, fs
    from detect import layout, scoring, tables
    from detect.listing import list_recordings
    from detect.model import ExportedModel

    meta = export_layout.read_metadata(model_dir)
    model = ExportedModel.load(model_dir, meta)
    thresholds = [0.5] * meta.num_classes
    rows = []
    for rec in list_recordings(audio_dir).tasks:
        with open(rec.path, "rb") as f:
            y = scoring.waveform(f.read(), meta.sample_rate, None, 4 * 3600.0)
        ws = scoring.score_recording(rec.recording_id, y, model, meta.window_samples, meta.stride_samples,
                                     meta.sample_rate, 32)
        mine = tables.detection_rows(ws, thresholds)
        layout.write_atomically(layout.raven_path(out, rec.recording_id),
                                tables.raven_table(mine, meta.species, meta.sample_rate / 2).encode())
        layout.write_atomically(layout.part_path(out, rec.recording_id), layout.part_bytes(ws))
        rows += mine
    fs.write_text(os.path.join(out, layout.DETECTIONS), tables.detections_frame(rows).to_csv(index=False))


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the process tree) of running `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="")
    p.add_argument("--num_test", type=int, default=96)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--sample_rate", type=int, default=48000)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--audio", help=argparse.SUPPRESS)
    p.add_argument("--loop_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.loop:
        loop(args.model, args.audio, args.loop_out)
        return {}
    os.makedirs(args.out, exist_ok=True)
    data = _dataset(args.out, args.num_test, args.duration, args.sample_rate)
    model = args.model or _fake_model(args.out)
    audio = os.path.join(data, "test")
    beam_out, loop_out = os.path.join(args.out, "bench_detect_beam"), os.path.join(args.out, "bench_detect_loop")
    for d in (beam_out, loop_out):
        shutil.rmtree(d, ignore_errors=True)
    load_before = common.load_average()
    loop_wall, loop_cpu = _timed([sys.executable, "-m", "benchmarks.bench_detect", "--loop", "--model", model,
                                  "--audio", audio, "--loop_out", loop_out])
    beam_wall, beam_cpu = _timed([sys.executable, "-m", "detect.run", "--model", model, "--audio", audio,
                                  "--out", beam_out, "--progress_seconds", "0", "--runner", "DirectRunner",
                                  "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    same = pd.read_csv(os.path.join(beam_out, "detections.csv")).equals(
        pd.read_csv(os.path.join(loop_out, "detections.csv")))
    audio_s = args.num_test * args.duration
    result = {"recordings": args.num_test, "audio_seconds": audio_s, "model": model, "fake_model": not args.model,
              "loop": {"wall_s": round(loop_wall, 2), "cpu_s": round(loop_cpu, 2), "rtf": round(audio_s / loop_wall, 1)},
              "beam": {"wall_s": round(beam_wall, 2), "cpu_s": round(beam_cpu, 2), "rtf": round(audio_s / beam_wall, 1)},
              "beam_over_loop": round(loop_wall / beam_wall, 2), "same_detections": same,
              "load_average_before": load_before, "load_average_after": common.load_average(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu_count": os.cpu_count(),
              "cpu": common.read_cpu_features()["model"]}
    print(f"{args.num_test} recordings x {args.duration:g} s ({audio_s:g} s of audio), model {model}")
    print("| side | wall s | CPU s | real-time factor |\n|---|---|---|---|")
    for side in ("loop", "beam"):
        r = result[side]
        print(f"| {side} | {r['wall_s']} | {r['cpu_s']} | {r['rtf']}x |")
    print(f"beam / loop: {result['beam_over_loop']}x; same detections.csv: {same}; load average "
          f"{load_before:.1f} -> {result['load_average_after']:.1f}")
    with open(os.path.join(args.out, "bench_detect.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
