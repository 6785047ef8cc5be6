"""RFCX recordings -> TFRecord shards: the Apache Beam job (driver side).

    python -m pipeline.shards --data_dir DATA --output_dir OUT [--num_folds 5] [--fold_seed 27]
        [--slice_seconds 10] [--sample_rate 48000] [--num_classes 24] [--max_shard_mb 200]
        [--background_per_recording 2] [--overwrite] [--progress_seconds 30]
        [Beam options: --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing
         | --runner DataflowRunner --project ... ]

On the DirectRunner without --direct_* options the job runs one worker process per core from
MIN_RECORDINGS_PER_WORKER x 2 recordings on (default_local_workers), in-process below.

DATA (local or gs://) holds train_tp.csv, train_fp.csv (optional), train/*.flac, test/*.flac and
sample_submission.csv (+ test_truth.csv, optional). The driver reads the small CSVs, validates the
columns, assigns folds by recording (pipeline.folds) to every training recording (one with a tp or
fp row), and ships one small element per recording; workers read and decode one recording at a time
and cut its tp, fp and background slices (pipeline.transforms / pipeline.examples). OUT gets:

    config.json, folds.csv, sample_submission.csv [, test_truth.csv]   before the job
    train/fold-K/{tp,fp,background}-SSSSS-of-NNNNN.tfrecord             train slices, one file set per kind
    test/test-*.tfrecord                                               whole test recordings (core.schema)
                                          (no file for a kind without examples)
    rejected/rejected-*.jsonl                                         dead letters with reasons
    manifest.json                                                     last: file lists and counts

(names: core.manifest, which the trainer reads with; the manifest's content and the checks of
its counts: pipeline.manifest_writer; the size-capped TFRecord writer: pipeline.tfrecord_sink).

User mistakes (missing dir/CSV/column, bad flag, non-empty OUT without --overwrite, OUT not a
writable dir, a test recording in the training CSVs) stop the job before it starts with one
`error:` line and exit status 2. OUT/.shards.lock (core.outlock) keeps a second run out of OUT
while this one runs.

Progress: every --progress_seconds the workers log `progress: 12/48 recordings (25%), 1.9 rec/s,
ETA 19 s` (core.progress; with --direct_running_mode multi_processing each worker process
reports its own share), and the driver logs the finished count once the job ends.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import time
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from core import checks, fs, outlock, outputs, progress
from core import manifest as layout
from core.errors import UserError, run_main
from pipeline import disk_space, examples, labels, listing, manifest_writer, transforms
from pipeline.config import ShardsConfig, parse_shards_args
from pipeline.folds import assign_folds
from pipeline.job_inputs import JobInputs
from pipeline.tfrecord_sink import WriteShards

# Copied from the data dir to OUT under the same name.
SUBMISSION_CSV, TRUTH_CSV = layout.SAMPLE_SUBMISSION, layout.TEST_TRUTH


def _group_rows(tables: Sequence[tuple[str, labels.CsvTable | None]]) -> dict[str, list[labels.CsvRow]]:
    """{recording_id: its tp and fp rows}, recordings in first-seen order."""
    grouped: dict[str, list[labels.CsvRow]] = collections.defaultdict(list)
    for kind, table in tables:
        for i, raw in enumerate(table.rows if table else ()):
            grouped[labels.recording_key(raw)].append(labels.CsvRow(kind, i, raw))
    return grouped


def load_inputs(cfg: ShardsConfig) -> JobInputs:
    """Reads the CSVs and file listings of cfg.data_dir and builds one task per recording."""
    data = cfg.data_dir
    if not fs.isdir(data):
        raise UserError(f"--data_dir {data} is not a directory")
    tp = labels.read_csv(fs.join(data, labels.TP_CSV), required=True)
    fp = labels.read_csv(fs.join(data, labels.FP_CSV), required=False)
    if not fs.exists(fs.join(data, SUBMISSION_CSV)):
        raise UserError(f"{fs.join(data, SUBMISSION_CSV)} not found (the RFCX layout has it next to train_tp.csv)")
    submission_ids = listing.read_submission_ids(fs.join(data, SUBMISSION_CSV), cfg.num_classes)
    if not tp.rows:
        raise UserError(f"{tp.path} has no data rows")
    grouped = _group_rows([("tp", tp), ("fp", fp)])
    # Rows without a recording id, or with one that could name a file outside train/
    # (labels.is_safe_id), are no recording: their task only turns them into dead letters (no fold,
    # no background slices).
    recordings = [rid for rid in grouped if rid and labels.is_safe_id(rid)]
    fold_of = assign_folds(*_stratification(grouped, recordings), cfg.num_folds, cfg.fold_seed)
    train_files = listing.flac_files(fs.join(data, "train"))
    test_files = listing.flac_files(fs.join(data, "test"))
    split = listing.split_report(test_files.paths, submission_ids, recordings)
    listing.check_test_not_in_train(split, cfg.allow_test_in_train)
    n_bg, safe = cfg.background_per_recording, set(recordings)
    tasks = [examples.RecordingTask(examples.TRAIN, rid,
                                    train_files.paths.get(rid, fs.join(data, "train", f"{rid}.flac")),
                                    fold_of.get(rid, examples.NO_FOLD), tuple(rows), n_bg if rid in safe else 0)
             for rid, rows in grouped.items()]
    tasks += [examples.RecordingTask(examples.TEST, rid, path) for rid, path in sorted(test_files.paths.items())]
    unlabelled = sum(1 for rid in train_files.paths if rid not in grouped)
    return JobInputs(tuple(tasks), fold_of, tp, fp, len(test_files.paths), unlabelled, len(recordings),
                     n_bg * len(recordings), split, train_files.ignored + test_files.ignored)


# Stratification label of a recording with fp rows only: its own class, so that such recordings
# spread over the folds too.
NO_TP_LABEL = "(no tp row)"


def _stratification(grouped: dict[str, list[labels.CsvRow]], recordings: list[str]) -> tuple[list, list]:
    """(recording id, label) lists for assign_folds: one per tp row (its species), one per fp-only recording."""
    ids, species = [], []
    for rid in recordings:
        tp_rows = [r for r in grouped[rid] if r.kind == "tp"]
        for r in tp_rows:
            ids.append(rid)
            species.append(str(r.raw["species_id"]).strip())
        if not tp_rows:
            ids.append(rid)
            species.append(NO_TP_LABEL)
    return ids, species


def prepare_output(cfg: ShardsConfig) -> None:
    """Refuses a non-empty OUT unless --overwrite; with it, deletes the old output whole."""
    out = cfg.output_dir
    existing = [fs.join(out, n) for n in (fs.listdir(out) if fs.isdir(out) else []) if not outlock.is_lock_path(n)]
    if not existing:
        return
    problem = outputs.not_shards_output(out, existing)
    if problem:  # not a shards dir: suggesting --overwrite would delete another command's output
        raise UserError(f"refusing to {'--overwrite' if cfg.overwrite else 'write into'} --output_dir {out}: "
                        f"{problem}; choose another --output_dir (or delete it yourself if you mean it)")
    if not cfg.overwrite:
        raise UserError(f"--output_dir {out} is not empty; pass --overwrite to replace it "
                        f"(SHARDS_ARGS=--overwrite with make)")
    if outputs.data_inside(cfg.data_dir, out):  # real paths: a symlinked --data_dir is caught too
        raise UserError(f"refusing to --overwrite {out}: --data_dir {cfg.data_dir} is inside it")
    fs.remove_all(existing)  # everything but this run's lock (core.outlock)


def write_preamble(cfg: ShardsConfig, inputs: JobInputs) -> None:
    """config.json, folds.csv and the copied CSVs, before the job runs."""
    out = cfg.output_dir
    fs.makedirs(out)
    fs.write_bytes(fs.join(out, layout.CONFIG_FILE), json.dumps(dataclasses.asdict(cfg), indent=2).encode())
    folds = "recording_id,fold\n" + "".join(f"{rid},{k}\n" for rid, k in sorted(inputs.fold_of.items()))
    fs.write_bytes(fs.join(out, layout.FOLDS_CSV), folds.encode())
    for name in (SUBMISSION_CSV, TRUTH_CSV):
        if fs.exists(fs.join(cfg.data_dir, name)):
            fs.write_bytes(fs.join(out, name), fs.read_bytes(fs.join(cfg.data_dir, name)))


def worker_processes(options: PipelineOptions) -> int | None:
    """How many processes share the recordings: 1 on the in-process (or multi-threaded) DirectRunner,
    its worker count with --direct_running_mode multi_processing, None (unknown) on other runners."""
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    if "direct" not in runner.lower():
        return None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return 1
    return direct.direct_num_workers or os.cpu_count()


def build_pipeline(p: beam.Pipeline, cfg: ShardsConfig, inputs: JobInputs) -> None:
    """Adds the job's labelled steps to `p`."""
    out = cfg.output_dir
    results = (
        p
        | "CreateRecordingTasks" >> beam.Create(inputs.tasks)  # Create reshuffles: tasks spread over workers
        | "DecodeCropSerialize" >> beam.ParDo(transforms.ProcessRecording(
            cfg, len(inputs.tasks), worker_processes(p.options))).with_outputs(
            transforms.REJECTED_TAG, main=transforms.EXAMPLES_TAG)
    )
    # Decode and write run fused on the worker that read the recording: the examples never leave it
    # (pipeline.tfrecord_sink); only the closed files' names and the dead letters travel.
    (results[transforms.EXAMPLES_TAG]
     | "WriteShards" >> WriteShards(transforms.shard_destinations(cfg, out), temp_root=out))
    (results[transforms.REJECTED_TAG]
     | "WriteRejected" >> beam.io.WriteToText(
         fs.join(out, layout.REJECTED_PREFIX), file_name_suffix=layout.REJECTED_SUFFIX, num_shards=1))


def _make_pipeline(cfg: ShardsConfig, beam_argv: list[str]) -> beam.Pipeline:
    """The Beam pipeline for the non-job flags; a flag neither we nor Beam know is a UserError."""
    options = PipelineOptions(beam_argv)
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    local = [p for p in (cfg.data_dir, cfg.output_dir) if not fs.is_remote(p)]
    if "Dataflow" in runner and local:
        raise UserError(f"{runner} workers cannot read or write local paths ({', '.join(local)}); use gs:// paths")
    # Beam only warns about flags it does not know, so a typo such as --num_fold would go unnoticed.
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    if unknown:
        raise UserError(f"unknown flag(s): {', '.join('--' + u for u in sorted(unknown))} "
                        f"(see `python -m pipeline.shards --help` and Beam's pipeline options)")
    try:
        return beam.Pipeline(runner=_local_runner(options) if _is_direct(options) else None, options=options)
    except ValueError as e:  # e.g. an unknown --runner
        raise UserError(f"bad Beam pipeline option: {e}") from e


def _is_direct(options: PipelineOptions) -> bool:
    return str(options.view_as(StandardOptions).runner or "DirectRunner") in ("DirectRunner", "direct")


def _local_runner(options: PipelineOptions):
    """Beam's FnApiRunner, set up as the DirectRunner sets it up (the workers get the options).

    The DirectRunner of Beam >= 2.6x first tries Prism, a Go runner it downloads from GitHub at run
    time: offline that attempt fails and costs ~1-2 s before it falls back to this same runner;
    online the job would download a binary and run on another runner than the one measured.
    """
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


# Below this many recordings per process, starting worker processes (~2-3 s each: Python, Beam,
# numpy, soundfile) costs more than the extra cores save (docs/results.md, sharding job).
MIN_RECORDINGS_PER_WORKER = 50
_DIRECT_FLAGS = ("--direct_num_workers", "--direct_running_mode")


def default_local_workers(options: PipelineOptions, beam_argv: Sequence[str], recordings: int) -> None:
    """On the DirectRunner, unless the user chose: one worker process per core the job may use
    (multi_processing), at most one per MIN_RECORDINGS_PER_WORKER recordings; in-process below two."""
    if not _is_direct(options) or any(a.split("=")[0] in _DIRECT_FLAGS for a in beam_argv):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cores, recordings // MIN_RECORDINGS_PER_WORKER)
    if workers >= 2:
        direct = options.view_as(DirectOptions)
        direct.direct_running_mode, direct.direct_num_workers = "multi_processing", workers


def run(argv: Sequence[str] | None = None):
    """Runs the job; returns the PipelineResult (its metrics hold the counters)."""
    cfg, beam_argv = parse_shards_args(argv)
    checks.output_dir("--output_dir", cfg.output_dir)
    inside = outputs.inside_other_output(cfg.output_dir)  # a run dir's or another shards job's files
    if inside:
        raise UserError(f"--output_dir {cfg.output_dir} is inside {inside}; choose a dir outside it")
    pipeline = _make_pipeline(cfg, beam_argv)
    inputs = load_inputs(cfg)
    default_local_workers(pipeline.options, beam_argv, len(inputs.tasks))
    # One run per output dir; a full disk ends in one error line, without temp files or a manifest.
    with outlock.held(cfg.output_dir, cfg.overwrite), disk_space.full_disk_is_a_user_error(cfg.output_dir):
        prepare_output(cfg)
        write_preamble(cfg, inputs)
        progress_log = logging.getLogger(progress.LOGGER_NAME)
        # The total, for a runner whose console shows only the recordings_processed counter (Dataflow).
        progress_log.info("progress: launching the job on %d recordings", len(inputs.tasks))
        started = time.monotonic()
        with pipeline as p:
            build_pipeline(p, cfg, inputs)
        counters = manifest_writer.read_counters(p.result)
        progress_log.info("%s", progress.finished_line(
            counters.get(transforms.RECORDINGS_PROCESSED, 0), len(inputs.tasks), time.monotonic() - started))
        failed = counters.get(transforms.RECORDINGS_FAILED, 0)
        if inputs.tasks and failed == len(inputs.tasks):
            # Every recording raised: a bug or a broken worker setup, not bad data (see the log).
            raise RuntimeError(f"all {failed} recordings failed with an unexpected error (worker_error in "
                               f"{cfg.output_dir}/rejected/); no manifest written")
        manifest = manifest_writer.build_manifest(cfg, inputs, counters)
        problems = manifest_writer.count_mismatches(manifest["counts"])
        if problems:
            # A bug, not a user error: no manifest, so no reader takes this output for complete.
            raise RuntimeError("counts do not add up: " + "; ".join(problems))
        disk_space.write_atomically(fs.join(cfg.output_dir, layout.MANIFEST_FILE),
                                    json.dumps(manifest, indent=2).encode())
    print("\n".join(manifest_writer.summary_lines(manifest, counters)
                    + listing.summary_lines(inputs.split, inputs.ignored_files)
                    + [f"wrote {fs.join(cfg.output_dir, layout.MANIFEST_FILE)}"]))
    return p.result


def main(argv: Sequence[str] | None = None) -> None:
    progress.configure_job_logging()
    run(argv)


if __name__ == "__main__":
    run_main(main)
