"""Sliding-window inference of one or more finished runs over the test shards -> Kaggle submission.

Each test recording is cut into windows of the run's training window (stride: --stride_seconds,
default half a window; the last window ends at the recording's end; a recording shorter than a
window is zero-padded to one). Each window goes through the run's own front end (trainer.mel.log_mel
with the run's MelConfig from config.json) and its best.keras; a recording's score per species is
the max over its windows, and several runs (e.g. the CV folds) are averaged: max, then mean.

The output has the header recording_id,s0,...,s{C-1} and the rows of the shards'
sample_submission.csv in its order (checked before writing). Next to it go <stem>.config.json (the
resolved settings) and, when the shards hold test_truth.csv (the demo dataset does),
<stem>.score.json with the LWLRAP of the submission over recordings. Each run also gets
run_dir/serving.keras (waveform in, scores out; see trainer.serving) if it has none yet.

Usage:

    python -m trainer.predict --run_dir runs/demo/fold0 [--run_dir runs/demo/fold1 ...] \
        --shards_dir data/shards/demo --output runs/demo/submission.csv
    python -m trainer.predict --runs_root runs/demo --shards_dir data/shards/demo --output sub.csv
        # every complete run dir (with summary.json) under runs/demo
    make predict [RUNS="runs/demo/fold0 ..."] [SHARDS=dir] [OUT=file.csv]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from pipeline import checks
from pipeline.errors import UserError, run_main
from trainer import data, mel, progress, recordings, runs, serving, submission, timelines
from trainer.windows import default_stride, seconds_to_samples, window_batches

SAMPLE_SUBMISSION = "sample_submission.csv"
TEST_TRUTH = "test_truth.csv"


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Inference settings. stride_seconds=None means half of each run's window."""

    stride_seconds: float | None = None
    batch_size: int = 16  # windows per model call (a 10 s window is 1.9 MB of float32)


def window_scorer(run: runs.Run, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """float32 [batch, window_samples] -> float32 [batch, num_classes]: the run's log_mel + best.keras."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, run.window_samples], tf.float32)])
    def score(windows: tf.Tensor) -> tf.Tensor:
        features = mel.log_mel(windows, run.config.mel)[..., tf.newaxis]  # [batch, n_mels, frames, 1]
        return tf.cast(model(features, training=False), tf.float32)  # [batch, num_classes]

    return lambda windows: score(tf.constant(windows, tf.float32)).numpy()


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


def run_recording_scores(
    run: runs.Run, model: Any, shards_dir: str | Path, manifest: dict[str, Any], recording_ids: Sequence[str],
    cfg: PredictConfig,
) -> np.ndarray:
    """One run's scores of every test recording: float32 [R, C], rows in `recording_ids` order."""
    score = window_scorer(run, model)

    def waveforms() -> Iterator[np.ndarray]:
        test = recordings.iter_test_recordings(shards_dir, manifest)
        for i, rec in enumerate(progress.over(test, f"predicting with {run.run_dir}", len(recording_ids))):
            if i >= len(recording_ids) or rec.recording_id != recording_ids[i]:
                raise UserError(f"the test shards of {shards_dir} changed while predicting; run again")
            yield rec.waveform

    window_scores, owners = [], []
    for batch, owner in window_batches(waveforms(), run.window_samples, stride_samples(run, cfg), cfg.batch_size):
        window_scores.append(score(batch))  # [batch, C]
        owners.append(owner)
    return submission.max_per_recording(np.concatenate(window_scores), np.concatenate(owners), len(recording_ids))


def _side_path(output: Path, kind: str) -> Path:
    return output.with_name(f"{output.stem}.{kind}.json")


def predict(
    run_dirs: Sequence[str | Path], shards_dir: str | Path, output: str | Path, cfg: PredictConfig = PredictConfig()
) -> dict[str, Any]:
    """Ensembles `run_dirs` over the test shards, writes the submission; returns a summary dict."""
    shards_dir, output = Path(shards_dir), Path(output)
    for path in (output, _side_path(output, "config"), _side_path(output, "score")):  # before any inference
        checks.output_file("--output", str(path))
    manifest = data.read_manifest(str(shards_dir))
    loaded = [runs.open_run(d) for d in run_dirs]  # configs only: every check before a model loads
    runs.check_ensemble(loaded)
    for run in loaded:
        runs.check_against_manifest(run, manifest, shards_dir)
        stride_samples(run, cfg)  # fail on a bad stride before any inference
    sample_path = shards_dir / SAMPLE_SUBMISSION
    if not sample_path.is_file():
        raise UserError(f"{shards_dir} has no {SAMPLE_SUBMISSION} (the shards job copies it from the data dir)")
    sample = submission.read_score_table(sample_path)
    if len(sample.columns) - 1 != int(manifest["num_classes"]):
        raise UserError(f"{sample_path} has {len(sample.columns) - 1} species columns but the shards have "
                        f"{manifest['num_classes']} classes")
    recording_ids = recordings.list_test_ids(shards_dir, manifest)
    submission.check_test_recordings(recording_ids, sample, shards_dir, manifest)

    per_run = []
    for run in loaded:  # one model in memory at a time
        model = runs.load_model(run)
        serving.export_serving(run, model)
        print(f"predicting {len(recording_ids)} recordings with {run.run_dir}")
        per_run.append(run_recording_scores(run, model, shards_dir, manifest, recording_ids, cfg))
    table = submission.build_submission(recording_ids, submission.mean_over_runs(per_run), sample)
    submission.write_submission(table, output)
    print(f"wrote {output} ({len(table)} recordings, {len(loaded)} run(s) averaged)")

    summary: dict[str, Any] = {
        "output": str(output), "shards_dir": str(shards_dir), "num_recordings": len(table),
        "runs": [str(r.run_dir) for r in loaded],
        "stride_samples": {str(r.run_dir): stride_samples(r, cfg) for r in loaded},
        "config": dataclasses.asdict(cfg),
    }
    _side_path(output, "config").write_text(json.dumps(summary, indent=2) + "\n")
    truth_path, score_path = shards_dir / TEST_TRUTH, _side_path(output, "score")
    score_path.unlink(missing_ok=True)  # never leave the score of an earlier submission next to this one
    if truth_path.is_file():
        summary["test_lwlrap"] = score_submission(table, truth_path, score_path)
    return summary


def score_submission(table: pd.DataFrame, truth_path: Path, score_path: Path) -> float | None:
    """LWLRAP of the submission over recordings vs test_truth.csv; printed and written to score_path.

    None (and a printed note) when the truth has no positive label, so LWLRAP is undefined.
    """
    from trainer.lwlrap import LwlrapError, lwlrap

    truth, scores = submission.align_truth(table, submission.read_score_table(truth_path))
    try:
        value = float(lwlrap(truth, scores))
    except LwlrapError as e:
        print(f"not scored against {truth_path}: {e}")
        return None
    score_path.write_text(json.dumps(
        {"lwlrap": value, "num_recordings": len(table), "truth": str(truth_path)}, indent=2) + "\n")
    print(f"test LWLRAP vs {truth_path.name}: {value:.4f} (written to {score_path})")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checks.ArgumentParser(prog="python -m trainer.predict", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run_dir", action="append", help="a finished run dir; repeat to ensemble")
    source.add_argument("--runs_root", help="ensemble every complete run dir directly under this dir")
    parser.add_argument("--shards_dir", required=True, help="shards dir of pipeline.shards (test/ + manifest)")
    parser.add_argument("--output", required=True, help="submission CSV to write")
    parser.add_argument("--stride_seconds", type=float, default=None, help="default: half of each run's window")
    parser.add_argument("--batch_size", type=int, default=PredictConfig.batch_size, help="windows per model call")
    parser.add_argument("--plot_dir", help="also write detection timelines (trainer.timelines) here")
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
        print(f"ensembling the complete runs under {args.runs_root}: {', '.join(d.name for d in run_dirs)}")
    cfg = PredictConfig(args.stride_seconds, args.batch_size)
    result = predict(run_dirs, args.shards_dir, args.output, cfg)
    if args.plot_dir:  # detection timelines of a few recordings, the windows scored as above
        timelines.write_timelines(args.plot_dir, run_dirs, args.shards_dir, args.plot_recordings, window_scorer,
                                  lambda run: stride_samples(run, cfg), cfg.batch_size)
    return result


if __name__ == "__main__":
    run_main(main)
