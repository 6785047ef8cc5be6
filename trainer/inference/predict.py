"""Sliding-window inference of one or more finished runs over the test shards -> Kaggle submission.

Each test recording is cut into windows of the run's training window (stride: --stride_seconds,
default half a window; the last window ends at the recording's end; a recording shorter than a
window is zero-padded to one). Each window is scored by the run's serving model (trainer.inference.serving:
waveform in, scores out, the run's own LogMel front end inside); a recording's score per species
is the max over its windows, and several runs (e.g. the CV folds) are averaged: max, then mean.
The test audio is decoded in one pass per prediction, not one per model: every model of the
ensemble is loaded first and scores each group of recordings as it streams by (an earlier pass
reads only the recording ids, to check them against sample_submission.csv before inference).

The output has the header recording_id,s0,...,s{C-1} and the rows of the shards'
sample_submission.csv in its order (checked before writing). Next to it go <stem>.config.json (the
resolved settings) and, when the shards hold test_truth.csv (the demo dataset does),
<stem>.score.json with the LWLRAP of the submission over recordings. Each run also gets
run_dir/serving.keras if it has none yet. Every path may be local or gs:// (core.fs).

With --blend_baseline auto (the default), when the runs root's cv/report.json found out of fold that a
blend of these fold runs with the baseline pays, the submission is that blend of the ensemble's
recording scores with runs_root/baseline/submission.csv at the report's weight, species ranked within
each recording (trainer.inference.blending); otherwise the ensemble alone. One log line and
<stem>.config.json ("blend") say which, and why; with test truth, <stem>.score.json also holds the
ensemble's own LWLRAP beside the blend's. --blend_baseline off: the ensemble alone.

Usage:

    python -m trainer.inference.predict --run_dir runs/demo/fold0 [--run_dir runs/demo/fold1 ...] \
        --shards_dir data/shards/demo --output runs/demo/submission.csv [--blend_baseline auto|off]
    python -m trainer.inference.predict --runs_root runs/demo --shards_dir data/shards/demo --output sub.csv
        # every complete run dir (with summary.json) under runs/demo
    make predict [RUNS="runs/demo/fold0 ..."] [SHARDS=dir] [OUT=file.csv]
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from core import checks, fs, outputs, progress
from core import manifest as shards_layout
from core.errors import UserError, run_main
from core.manifest import Manifest
from core.windows import default_stride, seconds_to_samples, window_batches
from trainer.data import discovery, recordings
from trainer.inference import blending, serving, submission, timelines
from trainer.training import runs


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Inference settings. stride_seconds=None means half of each run's window."""

    stride_seconds: float | None = None
    batch_size: int = 16  # windows per model call (a 10 s window is 1.9 MB of float32)
    blend_baseline: str = "auto"  # auto: blend with the baseline where the cv report says it pays; off: never

    def __post_init__(self) -> None:
        if self.blend_baseline not in blending.MODES:
            raise UserError(f"--blend_baseline must be one of {', '.join(blending.MODES)}, got "
                            f"{self.blend_baseline!r}")


def stride_samples(run: runs.Run, cfg: PredictConfig) -> int:
    """The stride in samples for `run`; must be positive and at most one window."""
    if cfg.stride_seconds is None:
        return default_stride(run.window_samples)
    stride = seconds_to_samples(cfg.stride_seconds, run.config.mel.sample_rate)
    if not 0 < stride <= run.window_samples:
        raise UserError(
            f"--stride_seconds {cfg.stride_seconds} must be > 0 and at most the window of "
            f"{run.run_dir} ({run.config.window_seconds} s)"
        )
    return stride


@dataclasses.dataclass(frozen=True)
class Scorer:
    """One run's serving model with its windowing: float32 [B, window] waveforms -> float32 [B, C]."""

    run: runs.Run
    model: Any  # trainer.inference.serving.build_serving_model
    window: int
    stride: int

    @classmethod
    def load(cls, run: runs.Run, cfg: PredictConfig) -> "Scorer":
        """Loads best.keras, wraps it into the serving model and exports serving.keras if missing or stale."""
        trained = runs.load_model(run)
        model = serving.build_serving_model(run, trained)
        serving.export_serving(run, trained, serving=model)
        return cls(run, model, run.window_samples, stride_samples(run, cfg))

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        # predict_on_batch runs Keras' compiled predict function (a traced graph), not op-by-op eager calls.
        return np.asarray(self.model.predict_on_batch(windows), np.float32)


def _groups(recs: Iterator[recordings.Recording], min_samples: int) -> Iterator[list[recordings.Recording]]:
    """Consecutive recordings grouped until a group holds `min_samples` samples (the last may hold fewer).

    Every model scores a whole group before the next is read: the audio is decoded once, memory stays
    at about one group, and model calls stay full however short the recordings are.
    """
    group: list[recordings.Recording] = []
    total = 0
    for rec in recs:
        group.append(rec)
        total += len(rec.waveform)
        if total >= min_samples:
            yield group
            group, total = [], 0
    if group:
        yield group


def ensemble_recording_scores(scorers: Sequence[Scorer], shards_dir: str, manifest: Manifest,
                              recording_ids: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Per scorer, its scores of every test recording: float32 [R, C], rows in `recording_ids` order.

    The test shards are streamed once for all scorers.
    """
    window_scores: list[list[np.ndarray]] = [[] for _ in scorers]
    owners: list[list[np.ndarray]] = [[] for _ in scorers]
    first = 0  # index of the group's first recording
    group_samples = batch_size * max(s.window for s in scorers)
    runs_text = ", ".join(fs.basename(s.run.run_dir) for s in scorers)
    test = progress.over(recordings.iter_test_recordings(shards_dir, manifest), f"predicting with {runs_text}",
                         len(recording_ids))
    for group in _groups(test, group_samples):
        if [r.recording_id for r in group] != list(recording_ids[first:first + len(group)]):
            raise UserError(f"the test shards of {shards_dir} changed while predicting; run again")
        waves = [r.waveform for r in group]
        for i, scorer in enumerate(scorers):
            for batch, owner in window_batches(waves, scorer.window, scorer.stride, batch_size):
                window_scores[i].append(scorer(batch))  # [batch, C]
                owners[i].append(owner + first)
        first += len(group)
    return [submission.max_per_recording(np.concatenate(w), np.concatenate(o), len(recording_ids))
            for w, o in zip(window_scores, owners)]


def side_path(output: str, kind: str) -> str:
    """<stem>.<kind>.json next to the submission `output`."""
    return fs.with_suffix(output, f".{kind}.json")


def predict(
    run_dirs: Sequence[str], shards_dir: str, output: str, cfg: PredictConfig = PredictConfig(),
    plot_dir: str | None = None, plot_recordings: int | tuple[str, ...] = int(timelines.DEFAULT_RECORDINGS),
) -> dict[str, Any]:
    """Ensembles `run_dirs` over the test shards, writes the submission; returns a summary dict.

    With `plot_dir`, also the detection timelines of `plot_recordings` (trainer.inference.timelines), scored
    by the same models and windows.
    """
    shards_dir, output = str(shards_dir), str(output)
    for path in (output, side_path(output, "config"), side_path(output, "score")):  # before any inference
        checks.output_file("--output", path)
        outputs.refuse_inside("--output", path, is_dir=False)  # not into the shards (test_truth.csv) or a run
    if plot_dir:
        checks.output_dir("--plot_dir", plot_dir)
        outputs.refuse_inside("--plot_dir", plot_dir)
    manifest = discovery.read_manifest(shards_dir)
    loaded = [runs.open_run(d) for d in run_dirs]  # configs only: every check before a model loads
    runs.check_ensemble(loaded)
    for run in loaded:
        runs.check_against_manifest(run, manifest, shards_dir)
        stride_samples(run, cfg)  # fail on a bad stride before any inference
    sample = submission.read_sample_submission(shards_dir, manifest.num_classes)
    recording_ids = recordings.list_test_ids(shards_dir, manifest)
    submission.check_test_recordings(recording_ids, sample, shards_dir, manifest)
    if plot_dir:
        timelines.select_ids(sample[submission.ID_COLUMN].tolist(), plot_recordings)  # unknown ids: before inference
    plan = blending.plan_blend(cfg.blend_baseline, [r.run_dir for r in loaded], sample, recording_ids)
    print(plan.reason)

    scorers = [Scorer.load(run, cfg) for run in loaded]  # every model in memory: the audio is decoded once
    print(f"predicting {len(recording_ids)} recordings with {', '.join(r.run_dir for r in loaded)}")
    per_run = ensemble_recording_scores(scorers, shards_dir, manifest, recording_ids, cfg.batch_size)
    ensemble = submission.mean_over_runs(per_run)  # [R, C]
    table = submission.build_submission(recording_ids, plan.apply(ensemble), sample)
    submission.write_submission(table, output)
    print(f"wrote {output} ({len(table)} recordings, {len(loaded)} run(s) averaged"
          + (f", blended with the baseline at model weight {plan.weight:g})" if plan.weight is not None else ")"))

    summary: dict[str, Any] = {
        "output": output, "shards_dir": shards_dir, "num_recordings": len(table),
        "runs": [r.run_dir for r in loaded],
        "stride_samples": {s.run.run_dir: s.stride for s in scorers},
        "config": dataclasses.asdict(cfg),
        "blend": plan.describe(),
    }
    fs.write_json(side_path(output, "config"), summary)
    truth_path, score_path = fs.join(shards_dir, shards_layout.TEST_TRUTH), side_path(output, "score")
    fs.remove(score_path)  # never leave the score of an earlier submission next to this one
    if fs.isfile(truth_path):
        alone = None if plan.weight is None else submission.build_submission(recording_ids, ensemble, sample)
        summary["test_lwlrap"] = score_submission(table, truth_path, score_path, alone)
    if plot_dir:
        timelines.write_timelines(plot_dir, scorers, shards_dir, plot_recordings, cfg.batch_size)
    return summary


def score_submission(table: pd.DataFrame, truth_path: str, score_path: str,
                     model_alone: pd.DataFrame | None = None) -> float | None:
    """LWLRAP of the submission over recordings vs test_truth.csv; printed and written to score_path.

    With `model_alone` (the ensemble's own table when the submission is a blend), its LWLRAP too
    ("model_alone_lwlrap"). None (and a printed note) when the truth has no positive label, so LWLRAP is
    undefined.
    """
    from trainer.evaluation.lwlrap import LwlrapError, lwlrap

    truth_table = submission.read_score_table(truth_path)
    truth, scores = submission.align_truth(table, truth_table)
    try:
        value = float(lwlrap(truth, scores))
    except LwlrapError as e:
        print(f"not scored against {truth_path}: {e}")
        return None
    written: dict[str, Any] = {"lwlrap": value, "num_recordings": len(table), "truth": truth_path}
    if model_alone is not None:
        written["model_alone_lwlrap"] = float(lwlrap(*submission.align_truth(model_alone, truth_table)))
    fs.write_json(score_path, written)
    alone_text = f" (model alone {written['model_alone_lwlrap']:.4f})" if model_alone is not None else ""
    print(f"test LWLRAP vs {fs.basename(truth_path)}: {value:.4f}{alone_text} (written to {score_path})")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checks.ArgumentParser(prog="python -m trainer.inference.predict", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run_dir", action="append", help="a finished run dir; repeat to ensemble")
    source.add_argument("--runs_root", help="ensemble every complete run dir directly under this dir")
    parser.add_argument("--shards_dir", required=True, help="shards dir of pipeline.shards (test/ + manifest)")
    parser.add_argument("--output", required=True, help="submission CSV to write")
    parser.add_argument("--stride_seconds", type=float, default=None, help="default: half of each run's window")
    parser.add_argument("--batch_size", type=int, default=PredictConfig.batch_size, help="windows per model call")
    parser.add_argument("--blend_baseline", choices=blending.MODES, default=PredictConfig.blend_baseline,
                        help="auto: blend with RUNS_ROOT/baseline/submission.csv where RUNS_ROOT/cv/report.json "
                             "found out of fold that the blend pays; off: the ensemble alone")
    parser.add_argument("--plot_dir", help="also write detection timelines (trainer.inference.timelines) here")
    parser.add_argument("--plot_recordings", type=timelines.parse_selection, default=timelines.DEFAULT_RECORDINGS,
                        help="with --plot_dir: the first N of sample_submission.csv, or comma-separated ids")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    checks.number("--stride_seconds", args.stride_seconds, 0, low_open=True)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run_dirs = args.run_dir or runs.complete_runs_under(args.runs_root)
    if args.runs_root:
        print(f"ensembling the complete runs under {args.runs_root}: {', '.join(map(fs.basename, run_dirs))}")
    return predict(run_dirs, args.shards_dir, args.output,
                   PredictConfig(args.stride_seconds, args.batch_size, args.blend_baseline),
                   args.plot_dir, args.plot_recordings)


if __name__ == "__main__":
    run_main(main)
