"""Out-of-fold pseudo labels: every training slice's windows scored by the one fold model that never trained on it.

A cross-validation's run of fold k (trainer.training.cv: runs_root/foldK) trained on every fold but k and
validated on fold k, so fold k's recordings are exactly those it never heard. Each run scores the
slices of its own validation fold (tp, fp and background alike) in sliding windows (core.windows: the
run's window, half-window stride by default), and the rows go to the sidecar of trainer.data.soft_targets,
keyed by recording and window start within the recording. A window two slices share (they overlap)
gets the mean of its scores. A fold without a run gets no rows: its slices keep their box targets.

The fold a run validated on is read from its summary.json (trainer.training.run_guard: fold, shards_id),
never from its dir name; every scored slice's own `fold` must equal it.

    from trainer.pseudo.label import pseudo_label
    summary = pseudo_label("data/shards/demo", ["runs/demo/fold0", "runs/demo/fold1"],
                           "runs/demo/pseudo/round1/soft_targets.csv")
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from core import fs, windows
from core.errors import UserError
from trainer.data import discovery, records, soft_targets
from trainer.inference.predict import PredictConfig, Scorer
from trainer.training import run_guard, runs
from trainer.training import run_layout as layout

log = logging.getLogger("trainer.pseudo.label")
META_SUFFIX = ".json"  # soft_targets.csv -> soft_targets.json: what made the sidecar (resumability check)
WindowScorer = Callable[[np.ndarray], np.ndarray]  # float32 [B, window] -> float32 [B, C]


def runs_by_fold(run_dirs: Sequence[str], shards_dir: str) -> dict[int, runs.Run]:
    """{fold a run validated on: the run}; each a complete run of these shards, one run per fold."""
    sid = run_guard.shards_id(shards_dir)
    by_fold: dict[int, runs.Run] = {}
    for run_dir in run_dirs:
        run = runs.open_run(run_dir)
        summary = fs.read_json(layout.path(run.run_dir, layout.SUMMARY))
        if "fold" not in summary:
            raise UserError(f"{layout.path(run.run_dir, layout.SUMMARY)} does not say which fold the run "
                            f"validated on; retrain it with this version")
        if summary.get("shards_id") and summary["shards_id"] != sid:
            raise UserError(f"{run.run_dir} was trained on other shards ({summary.get('shards_dir')}) than "
                            f"{shards_dir}; its out-of-fold recordings are not these")
        fold = int(summary["fold"])
        if fold in by_fold:
            raise UserError(f"{by_fold[fold].run_dir} and {run.run_dir} both validated on fold {fold}; "
                            f"pseudo-label with one run per fold")
        by_fold[fold] = run
    return by_fold


def fold_slices(shards_dir: str, fold: int, num_classes: int) -> Iterator[dict[str, Any]]:
    """Every training slice of `fold` (its validation files): recording_id, fold, slice_start, waveform."""
    manifest = discovery.read_manifest(shards_dir)
    _, val_files = discovery.fold_files(manifest, shards_dir, fold)
    for r in records.parsed_records(val_files, records.train_parse_spec(num_classes)):
        yield {"recording_id": r["recording_id"].decode(), "fold": int(r["fold"]),
               "slice_start": int(r["slice_start"]), "waveform": records.pcm16_to_float_numpy(r["audio"])}


def score_slices(slices: Iterator[Mapping[str, Any]], fold: int, scorer: WindowScorer, window: int, stride: int,
                 batch_size: int) -> pd.DataFrame:
    """Sidecar rows of the windows of `slices` (all of fold `fold`) scored by `scorer`, the model of that fold.

    A slice of another fold is an error: the model may have trained on it.
    """
    meta: list[tuple[str, int, int]] = []

    def waves() -> Iterator[np.ndarray]:
        """The slices' waveforms one at a time (the fold's audio is never held whole), keys noted as they pass."""
        for s in slices:
            if s["fold"] != fold:
                raise UserError(f"a slice of recording {s['recording_id']} in fold {fold}'s shards says fold "
                                f"{s['fold']}; the model of fold {fold} may have trained on it (re-run `make shards`)")
            for start in windows.window_starts(len(s["waveform"]), window, stride):
                meta.append((s["recording_id"], fold, s["slice_start"] + int(start)))
            yield s["waveform"]

    scores = [scorer(batch) for batch, _ in windows.window_batches(waves(), window, stride, batch_size)]
    scored = np.concatenate(scores) if scores else np.zeros((0, 0), np.float32)  # [windows, C]
    if len(scored) != len(meta):
        raise AssertionError(f"{len(scored)} scores for {len(meta)} windows")
    table = pd.DataFrame(meta, columns=[soft_targets.ID, soft_targets.FOLD, soft_targets.START])
    table[soft_targets.LENGTH] = window
    for c in range(scored.shape[1] if len(scored) else 0):
        table[f"{soft_targets.SCORE_PREFIX}{c}"] = scored[:, c]
    keys = [soft_targets.ID, soft_targets.FOLD, soft_targets.START, soft_targets.LENGTH]
    return table.groupby(keys, as_index=False, sort=True).mean()  # windows shared by overlapping slices


def _load_scorer(run: runs.Run, cfg: PredictConfig) -> tuple[WindowScorer, int, int]:
    scorer = Scorer.load(run, cfg)
    return scorer, scorer.window, scorer.stride


def pseudo_label(shards_dir: str, run_dirs: Sequence[str], output: str, cfg: PredictConfig = PredictConfig(),
                 load_scorer: Callable[[runs.Run, PredictConfig], tuple[WindowScorer, int, int]] = _load_scorer,
                 ) -> dict[str, Any]:
    """Writes the sidecar `output` (and <stem>.json, what made it) from the fold runs; returns that summary.

    `load_scorer` (run, cfg) -> (scorer, window, stride): the run's serving model by default.
    """
    shards_dir, output = str(shards_dir), str(output)
    by_fold = runs_by_fold(run_dirs, shards_dir)
    if not by_fold:
        raise UserError("no fold run to pseudo-label with")
    manifest = discovery.read_manifest(shards_dir)
    missing = [k for k in manifest.folds_with_shards() if k not in by_fold]
    if missing:
        log.warning("no run validated on fold(s) %s: their slices get no pseudo labels", missing)
    tables, per_fold = [], {}
    for fold, run in sorted(by_fold.items()):
        runs.check_against_manifest(run, manifest, shards_dir)
        scorer, window, stride = load_scorer(run, cfg)
        print(f"fold {fold}: scoring its slices with {run.run_dir} (trained on folds "
              f"{[k for k in sorted(manifest.train) if k != fold]})", flush=True)
        table = score_slices(fold_slices(shards_dir, fold, manifest.num_classes), fold, scorer, window, stride,
                             cfg.batch_size)
        tables.append(table)
        per_fold[str(fold)] = {"run_dir": run.run_dir, "windows": len(table),
                               "recordings": int(table[soft_targets.ID].nunique())}
    soft_targets.write(pd.concat(tables, ignore_index=True), output)
    summary = {"output": output, "shards_dir": shards_dir, "shards_id": run_guard.shards_id(shards_dir),
               "runs": {k: v["run_dir"] for k, v in per_fold.items()}, "folds": per_fold,
               "stride_seconds": cfg.stride_seconds, "folds_without_run": missing}
    fs.write_json(meta_path(output), summary)
    print(f"wrote {output}: {sum(v['windows'] for v in per_fold.values())} windows of "
          f"{sum(v['recordings'] for v in per_fold.values())} recordings", flush=True)
    return summary


def meta_path(output: str) -> str:
    return fs.with_suffix(str(output), META_SUFFIX)
