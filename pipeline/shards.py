"""RFCX recordings -> TFRecord shards: the Apache Beam job (driver side).

    python -m pipeline.shards --data_dir DATA --output_dir OUT [--num_folds 5] [--fold_seed 27]
        [--slice_seconds 10] [--sample_rate 48000] [--num_classes 24] [--max_shard_mb 200]
        [--background_per_recording 2] [--overwrite] [Beam options: --runner DirectRunner --direct_num_workers 2
        --direct_running_mode multi_processing | --runner DataflowRunner --project ... ]

DATA (local or gs://) holds train_tp.csv, train_fp.csv (optional), train/*.flac, test/*.flac and
sample_submission.csv (+ test_truth.csv, optional). The driver reads the small CSVs, validates the
columns, assigns folds by recording (pipeline.folds) to every training recording (one with a tp or
fp row), and ships one small element per recording; workers read and decode one recording at a time
and cut its tp, fp and background slices (pipeline.transforms / pipeline.examples). OUT gets:

    config.json, folds.csv, sample_submission.csv [, test_truth.csv]   before the job
    train/fold-K/{tp,fp,background}-SSSSS-of-NNNNN.tfrecord             train slices, one file set per kind
    test/test-*.tfrecord                                               whole test recordings (pipeline.schema)
    rejected/rejected-*.jsonl                                         dead letters with reasons
    manifest.json                                                     last: file lists and counts

User mistakes (missing dir/CSV/column, bad flag, non-empty OUT without --overwrite, OUT not a
writable dir, a test recording in the training CSVs) stop the job before it starts with one
`error:` line and exit status 2. OUT/.shards.lock (pipeline.outlock) keeps a second run out of OUT
while this one runs.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import checks, examples, labels, listing, outlock, schema, transforms
from pipeline.tfrecord_sink import write_tfrecords
from pipeline.config import ShardsConfig, parse_shards_args
from pipeline.errors import UserError, run_main
from pipeline.folds import assign_folds

TP_CSV, FP_CSV = "train_tp.csv", "train_fp.csv"
SUBMISSION_CSV, TRUTH_CSV = "sample_submission.csv", "test_truth.csv"


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """Everything the driver learns from DATA before launching."""

    tasks: tuple[examples.RecordingTask, ...]
    fold_of: dict[str, int]
    tp: labels.CsvTable
    fp: labels.CsvTable | None
    test_files: int
    unlabelled_train_files: int
    training_recordings: int  # distinct (safe, labels.is_safe_id) recording ids with a tp or fp row
    background_slices: int  # background_per_recording x training_recordings
    split: listing.SplitReport = listing.SplitReport((), (), ())
    ignored_files: tuple[str, ...] = ()  # same stem in another letter case (listing.FlacFiles.ignored)


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _is_local(path: str) -> bool:
    return "://" not in path


def _match(pattern: str) -> list:
    """FileSystems metadata (path, size_in_bytes) of files matching `pattern`, [] when none."""
    try:
        return list(FileSystems.match([pattern])[0].metadata_list)
    except BeamIOError:
        return []


def _read(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


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
    if _is_local(data) and not os.path.isdir(data):
        raise UserError(f"--data_dir {data} is not a directory")
    tp = labels.read_csv(_join(data, TP_CSV), required=True)
    fp = labels.read_csv(_join(data, FP_CSV), required=False)
    if not FileSystems.exists(_join(data, SUBMISSION_CSV)):
        raise UserError(f"{_join(data, SUBMISSION_CSV)} not found (the RFCX layout has it next to train_tp.csv)")
    submission_ids = listing.read_submission_ids(_join(data, SUBMISSION_CSV))
    if not tp.rows:
        raise UserError(f"{tp.path} has no data rows")
    grouped = _group_rows([("tp", tp), ("fp", fp)])
    # Rows without a recording id, or with one that could name a file outside train/
    # (labels.is_safe_id), are no recording: their task only turns them into dead letters (no fold,
    # no background slices).
    recordings = [rid for rid in grouped if rid and labels.is_safe_id(rid)]
    fold_of = assign_folds(*_stratification(grouped, recordings), cfg.num_folds, cfg.fold_seed)
    train_files = listing.flac_files(_join(data, "train"))
    test_files = listing.flac_files(_join(data, "test"))
    split = listing.split_report(test_files.paths, submission_ids, recordings)
    listing.check_test_not_in_train(split, cfg.allow_test_in_train)
    n_bg, safe = cfg.background_per_recording, set(recordings)
    tasks = [examples.RecordingTask(examples.TRAIN, rid,
                                    train_files.paths.get(rid, _join(data, "train", f"{rid}.flac")),
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
    existing = [m.path for m in _match(_join(out, "*")) if not outlock.is_lock_path(m.path)]
    if not existing:
        return
    if not cfg.overwrite:
        raise UserError(f"--output_dir {out} is not empty; pass --overwrite to replace it "
                        f"(SHARDS_ARGS=--overwrite with make)")
    if not any(FileSystems.exists(_join(out, n)) for n in ("config.json", "manifest.json")):
        raise UserError(f"refusing to --overwrite {out}: it holds no config.json or manifest.json, so it "
                        f"was not written by pipeline.shards; delete it yourself if you mean it")
    if _is_local(out) and os.path.abspath(cfg.data_dir).startswith(os.path.abspath(out) + os.sep):
        raise UserError(f"refusing to --overwrite {out}: --data_dir {cfg.data_dir} is inside it")
    # Everything but this run's lock (pipeline.outlock). gs:// matches of "*" already list every
    # object under the prefix; a local dir's entries are deleted recursively by FileSystems.
    if _is_local(out):
        existing = [os.path.join(out, n) for n in os.listdir(out) if not outlock.is_lock_path(n)]
    FileSystems.delete(existing)


def write_preamble(cfg: ShardsConfig, inputs: JobInputs) -> None:
    """config.json, folds.csv and the copied CSVs, before the job runs."""
    out = cfg.output_dir
    if _is_local(out):
        os.makedirs(out, exist_ok=True)
    _write(_join(out, "config.json"), json.dumps(dataclasses.asdict(cfg), indent=2).encode())
    folds = "recording_id,fold\n" + "".join(f"{rid},{k}\n" for rid, k in sorted(inputs.fold_of.items()))
    _write(_join(out, "folds.csv"), folds.encode())
    for name in (SUBMISSION_CSV, TRUTH_CSV):
        if FileSystems.exists(_join(cfg.data_dir, name)):
            _write(_join(out, name), _read(_join(cfg.data_dir, name)))


def build_pipeline(p: beam.Pipeline, cfg: ShardsConfig, inputs: JobInputs) -> None:
    """Adds the job's labelled steps to `p`."""
    out = cfg.output_dir
    results = (
        p
        | "CreateRecordingTasks" >> beam.Create(inputs.tasks)  # Create reshuffles: tasks spread over workers
        | "DecodeCropSerialize" >> beam.ParDo(transforms.ProcessRecording(cfg)).with_outputs(
            transforms.REJECTED_TAG, main=transforms.EXAMPLES_TAG)
    )
    # Decode, partition and write run fused on the worker that read the recording: the examples
    # never leave it (see write_tfrecords). One partition per (fold, slice kind), test last: a reader
    # gets one kind of one fold without scanning the others.
    n_parts = transforms.num_partitions(cfg.num_folds)
    parts = (results[transforms.EXAMPLES_TAG]
             | "PartitionByFoldAndKind" >> beam.Partition(transforms.destination, n_parts))
    for k in range(cfg.num_folds):
        for kind in schema.SLICE_KINDS:
            (parts[transforms.partition_index(k, kind)]
             | f"DropKey{k}{kind}" >> beam.Values()
             | f"WriteFold{k}{kind.capitalize()}" >> write_tfrecords(_join(out, "train", f"fold-{k}", kind),
                                                                     cfg.max_train_fill_bytes))
    (parts[n_parts - 1]
     | "DropTestKey" >> beam.Values()
     | "WriteTest" >> write_tfrecords(_join(out, "test", "test"), cfg.max_test_fill_bytes))
    (results[transforms.REJECTED_TAG]
     | "WriteRejected" >> beam.io.WriteToText(
         _join(out, "rejected", "rejected"), file_name_suffix=".jsonl", num_shards=1))


def read_counters(result) -> dict[str, int]:
    """The job's counters by name, summed over steps (committed where the runner reports it)."""
    totals: dict[str, int] = collections.Counter()
    for c in result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] += int(value or 0)
    return dict(totals)


def _relative(out: str, pattern: str) -> list[str]:
    prefix = out.rstrip("/") + "/"
    return sorted(m.path[len(prefix):] if m.path.startswith(prefix) else m.path for m in _match(pattern))


def remove_empty_train_shards(out: str) -> list[str]:
    """Deletes the 0-byte files Beam writes for an empty (fold, kind) partition; returns their paths.

    A sink always writes at least one file, even for no elements. An empty TFRecord file holds no
    example, so the manifest lists [] for that kind instead (as tests/shard_factory.py does).
    """
    empty = [m.path for m in _match(_join(out, "train", "fold-*", "*.tfrecord")) if m.size_in_bytes == 0]
    if empty:
        FileSystems.delete(empty)
    return empty


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}


def build_manifest(cfg: ShardsConfig, inputs: JobInputs, counters: dict[str, int]) -> dict:
    """manifest.json content: shard lists (relative to OUT), counts and provenance."""
    out = cfg.output_dir
    kinds = schema.SLICE_KINDS
    rejected = {kind: _prefixed(counters, f"rejected_{kind}_") for kind in kinds + (examples.TEST,)}
    by_reason: dict[str, int] = collections.Counter()
    for d in rejected.values():
        by_reason.update(d)
    per_kind = {kind: counters.get(transforms.kind_counter(kind), 0) for kind in kinds}
    counts = {
        "tp_rows": len(inputs.tp.rows),
        "fp_rows": len(inputs.fp.rows) if inputs.fp else 0,
        "training_recordings": inputs.training_recordings,
        "background_slices": inputs.background_slices,
        "train_examples": counters.get(transforms.TRAIN_EXAMPLES, 0),
        "train_examples_per_kind": per_kind,
        "tp_rejected": sum(rejected[schema.KIND_TP].values()),
        "fp_rejected": sum(rejected[schema.KIND_FP].values()),
        "background_rejected": sum(rejected[schema.KIND_BACKGROUND].values()),
        "train_examples_per_fold": {str(k): counters.get(transforms.fold_counter(k), 0)
                                    for k in range(cfg.num_folds)},
        "train_examples_per_fold_kind": {str(k): {kind: counters.get(transforms.fold_kind_counter(k, kind), 0)
                                                  for kind in kinds} for k in range(cfg.num_folds)},
        "train_examples_per_species": {str(s): counters.get(transforms.species_counter(s), 0)
                                       for s in range(cfg.num_classes)},
        "fp_examples_per_species": {str(s): counters.get(transforms.species_counter(s, schema.KIND_FP), 0)
                                    for s in range(cfg.num_classes)},
        "test_files": inputs.test_files,
        "test_examples": counters.get(transforms.TEST_EXAMPLES, 0),
        "test_rejected": sum(rejected[examples.TEST].values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_by_kind": rejected,
        "bad_files": _prefixed(counters, "bad_file_"),
        "recordings_resampled": counters.get(transforms.RECORDINGS_RESAMPLED, 0),
        "recordings_downmixed": counters.get(transforms.RECORDINGS_DOWNMIXED, 0),
        "clipped_samples": counters.get(transforms.CLIPPED_SAMPLES, 0),
        "unlabelled_train_files": inputs.unlabelled_train_files,
        "audio": {name: counters.get(name, 0) for name in transforms.AUDIO_NOTES},
        "recordings_failed": counters.get(transforms.RECORDINGS_FAILED, 0),
    }
    inputs_info = {TP_CSV: {"sha256": inputs.tp.sha256, "rows": len(inputs.tp.rows)}}
    if inputs.fp:
        inputs_info[FP_CSV] = {"sha256": inputs.fp.sha256, "rows": len(inputs.fp.rows)}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "num_classes": cfg.num_classes,
        "sample_rate": cfg.sample_rate,
        "slice_seconds": cfg.slice_seconds,
        "num_folds": cfg.num_folds,
        "fold_seed": cfg.fold_seed,
        "files": {
            "train": {str(k): _relative(out, _join(out, "train", f"fold-{k}", "*.tfrecord"))
                      for k in range(cfg.num_folds)},
            "train_by_kind": {str(k): {kind: _relative(out, _join(out, "train", f"fold-{k}", f"{kind}-*.tfrecord"))
                                       for kind in schema.SLICE_KINDS} for k in range(cfg.num_folds)},
            "test": _relative(out, _join(out, "test", "*.tfrecord")),
            "rejected": _relative(out, _join(out, "rejected", "*.jsonl")),
        },
        "counts": counts,
        "test_set": {**inputs.split.as_dict(), "ignored_files": list(inputs.ignored_files)},
        "config": dataclasses.asdict(cfg),
        "inputs": inputs_info,
    }


def count_mismatches(counts: dict) -> list[str]:
    """Broken invariants; [] when all hold.

    Every tp row, fp row, background slice and test file is an example or a dead letter, and the
    per-kind and per-fold counts sum to the total.
    """
    problems = []
    per_kind = counts["train_examples_per_kind"]
    for kind, inputs in ((schema.KIND_TP, "tp_rows"), (schema.KIND_FP, "fp_rows"),
                         (schema.KIND_BACKGROUND, "background_slices")):
        if per_kind[kind] + counts[f"{kind}_rejected"] != counts[inputs]:
            problems.append(f"{kind} examples {per_kind[kind]} + rejected {counts[f'{kind}_rejected']} "
                            f"!= {inputs.replace('_', ' ')} {counts[inputs]}")
    if sum(per_kind.values()) != counts["train_examples"]:
        problems.append(f"examples per kind {per_kind} do not sum to train examples {counts['train_examples']}")
    if sum(counts["train_examples_per_fold"].values()) != counts["train_examples"]:
        problems.append(f"examples per fold {counts['train_examples_per_fold']} do not sum to train examples "
                        f"{counts['train_examples']}")
    if counts["test_examples"] + counts["test_rejected"] != counts["test_files"]:
        problems.append(f"test examples {counts['test_examples']} + rejected test files "
                        f"{counts['test_rejected']} != test files {counts['test_files']}")
    return problems


def summary_lines(manifest: dict, counters: dict[str, int]) -> list[str]:
    c = manifest["counts"]
    lines = ["counters:"] + [f"  {k}: {v}" for k, v in sorted(counters.items())]
    k = c["train_examples_per_kind"]
    lines += [
        f"tp: {c['tp_rows']} rows -> {k['tp']} examples + {c['tp_rejected']} rejected",
        f"fp: {c['fp_rows']} rows -> {k['fp']} examples + {c['fp_rejected']} rejected",
        f"background: {c['background_slices']} slices ({manifest['config']['background_per_recording']} x "
        f"{c['training_recordings']} training recordings) -> {k['background']} examples + "
        f"{c['background_rejected']} rejected",
        f"train examples per fold {c['train_examples_per_fold']}",
        f"test: {c['test_files']} files -> {c['test_examples']} examples + {c['test_rejected']} rejected",
        f"resampled {c['recordings_resampled']}, downmixed {c['recordings_downmixed']}, "
        f"clipped samples {c['clipped_samples']}, unlabelled train files {c['unlabelled_train_files']}",
    ]
    lines += [f"rejected {k}: {v}" for k, v in c["rejected_by_reason"].items()]
    lines += [f"audio: {', '.join(f'{k} {v}' for k, v in c['audio'].items())}"]
    lines.append("counts add up: every tp row, fp row, background slice and test file is an example or a dead letter")
    return lines


def _make_pipeline(cfg: ShardsConfig, beam_argv: list[str]) -> beam.Pipeline:
    """The Beam pipeline for the non-job flags; a flag neither we nor Beam know is a UserError."""
    options = PipelineOptions(beam_argv)
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    local = [p for p in (cfg.data_dir, cfg.output_dir) if _is_local(p)]
    if "Dataflow" in runner and local:
        raise UserError(f"{runner} workers cannot read or write local paths ({', '.join(local)}); use gs:// paths")
    # Beam only warns about flags it does not know, so a typo such as --num_fold would go unnoticed.
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    if unknown:
        raise UserError(f"unknown flag(s): {', '.join('--' + u for u in sorted(unknown))} "
                        f"(see `python -m pipeline.shards --help` and Beam's pipeline options)")
    try:
        return beam.Pipeline(options=options)
    except ValueError as e:  # e.g. an unknown --runner
        raise UserError(f"bad Beam pipeline option: {e}") from e


def run(argv: Sequence[str] | None = None):
    """Runs the job; returns the PipelineResult (its metrics hold the counters)."""
    cfg, beam_argv = parse_shards_args(argv)
    checks.output_dir("--output_dir", cfg.output_dir)
    pipeline = _make_pipeline(cfg, beam_argv)
    inputs = load_inputs(cfg)
    with outlock.held(cfg.output_dir, cfg.overwrite):  # one run per output dir
        prepare_output(cfg)
        write_preamble(cfg, inputs)
        with pipeline as p:
            build_pipeline(p, cfg, inputs)
        counters = read_counters(p.result)
        failed = counters.get(transforms.RECORDINGS_FAILED, 0)
        if inputs.tasks and failed == len(inputs.tasks):
            # Every recording raised: a bug or a broken worker setup, not bad data (see the log).
            raise RuntimeError(f"all {failed} recordings failed with an unexpected error (worker_error in "
                               f"{cfg.output_dir}/rejected/); no manifest written")
        remove_empty_train_shards(cfg.output_dir)
        manifest = build_manifest(cfg, inputs, counters)
        problems = count_mismatches(manifest["counts"])
        if problems:
            # A bug, not a user error: no manifest, so no reader takes this output for complete.
            raise RuntimeError("counts do not add up: " + "; ".join(problems))
        _write(_join(cfg.output_dir, "manifest.json"), json.dumps(manifest, indent=2).encode())
    print("\n".join(summary_lines(manifest, counters) + listing.summary_lines(inputs.split, inputs.ignored_files)
                    + [f"wrote {cfg.output_dir}/manifest.json"]))
    return p.result


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(argv)


if __name__ == "__main__":
    run_main(main)
