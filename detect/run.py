"""An exported model over a folder or bucket of recordings -> detections: the Apache Beam job (driver side).

    python -m detect.run --model EXPORT --audio AUDIO --out OUT [--stride_seconds S] [--channel N]
        [--threshold 0.5] [--threshold_file thresholds.json] [--embeddings] [--batch_size 32]
        [--test_layout [--sample_submission path]] [--overwrite]
        [Beam options: --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing
         | --runner DataflowRunner --project ... (see the README)]

EXPORT is a dir written by `make export` (core.export_layout); AUDIO holds .flac/.wav/.ogg files of
any length, sample rate and channel count, at any depth (detect.listing). Workers load the SavedModel
once each (DoFn setup), decode and resample each recording to the model's rate, score its windows in
batches and write its outputs; a final step assembles the tables (layout: detect.layout):

    OUT/windows/<id>.parquet, OUT/raven/<id>.txt, OUT/detections.csv [, OUT/submission.csv],
    OUT/rejected/rejected-*.jsonl (dead letters with reasons), OUT/summary.json (counts, last)

Re-running the same command into OUT resumes: recordings whose part file exists are not scored
again (a killed run's temp files are removed first); other settings that change outputs are
refused unless --overwrite. Every audio file listed ends scored, complete before, or rejected; the
driver checks that the counters add up. OUT/.detect.lock (core.outlock) keeps a second run out of
OUT while this one runs. User mistakes stop the job before it starts with one `error:` line, exit 2.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from core import checks, export_layout, fs, outlock, progress
from core.errors import UserError, run_main
from detect import layout, transforms
from detect.config import DetectConfig, parse_detect_args, thresholds
from detect.listing import Listing, list_recordings
from pipeline import listing as rfcx_listing
from pipeline.shards import worker_processes


@dataclasses.dataclass(frozen=True)
class Plan:
    """What this run does: the recordings to score, those complete before, the tables' settings."""

    listing: Listing
    complete_before: tuple[str, ...]
    meta: export_layout.ExportMetadata
    stride: int
    thresholds: tuple[float, ...]
    submission_ids: tuple[str, ...] | None

    @property
    def todo(self) -> list[tuple]:
        done = set(self.complete_before)
        return ([(r, False) for r in self.listing.tasks if r.recording_id not in done]
                + [(r, True) for r in self.listing.duplicates])


def _make_pipeline(cfg: DetectConfig, beam_argv: list[str]) -> beam.Pipeline:
    """The Beam pipeline for the non-job flags; a flag neither we nor Beam know is a UserError."""
    options = PipelineOptions(beam_argv)
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    local = [p for p in (cfg.model, cfg.audio, cfg.out) if not fs.is_remote(p)]
    if "Dataflow" in runner and local:
        raise UserError(f"{runner} workers cannot read or write local paths ({', '.join(local)}); use gs:// paths")
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    if unknown:
        raise UserError(f"unknown flag(s): {', '.join('--' + u for u in sorted(unknown))} "
                        f"(see `python -m detect.run --help` and Beam's pipeline options)")
    try:
        return beam.Pipeline(options=options)
    except ValueError as e:
        raise UserError(f"bad Beam pipeline option: {e}") from e


def _is_lock(name: str) -> bool:
    return fs.basename(name).startswith(layout.LOCK)


def prepare_output(cfg: DetectConfig, meta: export_layout.ExportMetadata) -> None:
    """Fresh OUT: nothing to do. A previous detection run's OUT: resumed (same settings and model) or, with
    --overwrite, emptied. Anything else: refused."""
    out = cfg.out
    existing = [n for n in (fs.listdir(out) if fs.isdir(out) else []) if not _is_lock(n)]
    if not existing:
        return
    saved = None
    if fs.exists(fs.join(out, layout.CONFIG)):
        try:
            saved = fs.read_json(fs.join(out, layout.CONFIG))
        except ValueError:
            saved = None
    if not isinstance(saved, dict) or "model" not in saved or not any(m in existing for m in layout.MARKERS):
        raise UserError(f"refusing to write into --out {out}: it holds {', '.join(existing[:6])}, not the output of "
                        f"detect.run; choose another --out")
    if cfg.overwrite:
        fs.remove_all([fs.join(out, n) for n in existing])
        return
    changes = cfg.changes_from(saved)
    saved_meta = fs.read_json(fs.join(out, layout.METADATA)) if fs.exists(fs.join(out, layout.METADATA)) else None
    if saved_meta is not None and saved_meta != json.loads(json.dumps(meta.to_dict())):
        changes.append("the model's metadata.json differs (another export)")
    if changes:
        raise UserError(f"--out {out} holds detections made with other settings ({'; '.join(changes)}); re-run "
                        f"with the same ones to resume, pass --overwrite to replace them, or choose another --out")
    layout.remove_temp_files(out)
    # This run's tables and dead letters replace the previous run's.
    fs.remove_all([fs.join(out, n) for n in (layout.REJECTED, layout.DETECTIONS, layout.SUBMISSION, layout.SUMMARY)])


def write_preamble(cfg: DetectConfig, meta: export_layout.ExportMetadata) -> None:
    out = cfg.out
    fs.makedirs(out)
    fs.write_json(fs.join(out, layout.CONFIG), dataclasses.asdict(cfg))
    fs.write_json(fs.join(out, layout.METADATA), meta.to_dict())
    fs.write_text(fs.join(out, layout.SPECIES), "name,id\n" + "".join(f"{s},{i}\n" for i, s in enumerate(meta.species)))


def make_plan(cfg: DetectConfig) -> Plan:
    """Reads the export's metadata, lists AUDIO and the thresholds, before anything is written."""
    meta = export_layout.read_metadata(cfg.model)
    stride = cfg.window_stride(meta)
    if not fs.isdir(cfg.audio):
        raise UserError(f"--audio {cfg.audio} is not a directory")
    found = list_recordings(cfg.audio)
    if not found.num_listed:
        raise UserError(f"--audio {cfg.audio} holds no .flac, .wav or .ogg file")
    submission_ids = None
    if cfg.test_layout:
        submission_ids = tuple(rfcx_listing.read_submission_ids(cfg.sample_submission, meta.num_classes))
    return Plan(found, (), meta, stride, tuple(thresholds(cfg, meta.species)), submission_ids)


def build_pipeline(p: beam.Pipeline, cfg: DetectConfig, plan: Plan) -> None:
    """Adds the job's labelled steps to `p`."""
    todo = plan.todo
    scored = (p
              | "ListRecordings" >> beam.Create(todo)  # Create reshuffles: recordings spread over workers
              | "ScoreRecordings" >> beam.ParDo(transforms.ScoreRecording(
                  cfg, plan.meta, plan.stride, plan.thresholds, len(todo), worker_processes(p.options)))
              .with_outputs(transforms.REJECTED, main=transforms.DONE))
    (scored[transforms.REJECTED]
     | "WriteDeadLetters" >> beam.io.WriteToText(fs.join(cfg.out, layout.REJECTED, "rejected"),
                                                 file_name_suffix=".jsonl", num_shards=1))
    earlier = (p
               | "CompleteBefore" >> beam.Create(list(plan.complete_before))
               | "ReadParts" >> beam.ParDo(transforms.ReadPart(cfg.out, plan.thresholds)))
    ((scored[transforms.DONE], earlier)
     | "AllRecordings" >> beam.Flatten()
     | "Collect" >> beam.combiners.ToList()
     | "WriteTables" >> beam.ParDo(transforms.WriteTables(cfg.out, plan.meta.num_classes, plan.submission_ids)))


def read_counters(result) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value or 0)
    return totals


def summarize(cfg: DetectConfig, plan: Plan, counters: dict[str, int], seconds: float) -> dict:
    """OUT/summary.json's content; RuntimeError when the counts do not add up (a bug: no summary then)."""
    scored, rejected = counters.get(transforms.SCORED, 0), counters.get(transforms.REJECTED_COUNT, 0)
    before = len(plan.complete_before)
    if scored + rejected + before != plan.listing.num_listed or counters.get(transforms.COMPLETE_BEFORE, 0) != before:
        raise RuntimeError(f"counts do not add up: {plan.listing.num_listed} listed, {scored} scored, {rejected} "
                           f"rejected, {before} complete before ({counters})")
    reasons = {k[len("rejected_"):]: v for k, v in sorted(counters.items()) if k.startswith("rejected_")}
    summary = {"listed": plan.listing.num_listed, "scored": scored, "complete_before": before, "rejected": rejected,
               "rejected_by_reason": reasons, "ignored_files": len(plan.listing.ignored),
               "windows_scored": counters.get(transforms.WINDOWS_SCORED, 0),
               "audio_seconds_scored": counters.get(transforms.AUDIO_MS, 0) / 1000.0,
               "wall_seconds": round(seconds, 3), "stride_samples": plan.stride,
               "thresholds": list(plan.thresholds)}
    if plan.submission_ids is not None:
        complete = layout.complete_ids(cfg.out)
        missing = [i for i in plan.submission_ids if i not in complete]
        summary["submission_missing_ids"] = missing
    return summary


def summary_lines(cfg: DetectConfig, s: dict) -> list[str]:
    lines = [f"{s['listed']} recordings: {s['scored']} scored, {s['complete_before']} complete before (skipped), "
             f"{s['rejected']} rejected" + (f" ({', '.join(f'{k}: {v}' for k, v in s['rejected_by_reason'].items())}; "
                                            f"see {fs.join(cfg.out, layout.REJECTED)}/)" if s["rejected"] else ""),
             f"{s['windows_scored']} windows, {s['audio_seconds_scored']:.1f} s of audio scored in "
             f"{s['wall_seconds']:.1f} s"]
    if s["ignored_files"]:
        lines.append(f"{s['ignored_files']} file(s) under --audio are not .flac/.wav/.ogg: ignored")
    missing = s.get("submission_missing_ids")
    if missing:
        lines.append(f"WARNING: no submission written: {len(missing)} id(s) of {cfg.sample_submission} have no "
                     f"scores: {rfcx_listing.shown(missing)}")
    elif missing is not None:
        lines.append(f"wrote {fs.join(cfg.out, layout.SUBMISSION)}")
    lines.append(f"wrote {fs.join(cfg.out, layout.DETECTIONS)} and {fs.join(cfg.out, layout.RAVEN)}/")
    return lines


def run(argv: Sequence[str] | None = None):
    """Runs the job; returns the PipelineResult (its metrics hold the counters)."""
    cfg, beam_argv = parse_detect_args(argv)
    checks.output_dir("--out", cfg.out)
    pipeline = _make_pipeline(cfg, beam_argv)
    plan = make_plan(cfg)
    # A lock left by a killed run on this host is replaced without --overwrite: resuming is this job's normal
    # way after a kill (a live run's lock, or one of another host, still stops this one).
    with outlock.held(cfg.out, True, name=layout.LOCK, job="detect.run", flag="--out"):
        prepare_output(cfg, plan.meta)
        listed = {r.recording_id for r in plan.listing.tasks}
        plan = dataclasses.replace(plan, complete_before=tuple(sorted(layout.complete_ids(cfg.out) & listed)))
        write_preamble(cfg, plan.meta)
        logging.getLogger(progress.LOGGER_NAME).info(
            "progress: launching the job on %d recordings (%d complete before)", len(plan.todo),
            len(plan.complete_before))
        started = time.monotonic()
        with pipeline as p:
            build_pipeline(p, cfg, plan)
        counters = read_counters(p.result)
        summary = summarize(cfg, plan, counters, time.monotonic() - started)
        fs.write_json(fs.join(cfg.out, layout.SUMMARY), summary)
    print("\n".join(summary_lines(cfg, summary)))
    return p.result


def main(argv: Sequence[str] | None = None) -> None:
    progress.configure_job_logging()
    run(argv)


if __name__ == "__main__":
    run_main(main)
