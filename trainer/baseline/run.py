"""The floor every trained model must beat: logistic regression on log-mel band statistics.

Features: per mel band, the mean, max and std over frames of the project's own log-mel front end
(trainer.features.mel.log_mel, "db" scaling, default n_fft/hop/n_mels; see trainer.baseline.band_features) of one
`--window_seconds` window per training slice, centred on its event (background slices: the slice
centre). Model: per species, StandardScaler + scikit-learn LogisticRegression (one-vs-rest; the
fitting and its cross-validation metrics are in trainer.baseline.classifier, this module reads the shards
and writes the outputs, through core.fs: local or gs://).

Partial labels (`--unlabelled_weight w`): for species c a slice where c is known (label_known[c] = 1:
a tp or fp box of c overlaps it) weighs 1, any other slice weighs w with target labels[c] = 0
(absent). w = 1 treats absence as negative (exhaustive labels); w = 0 trains c only on the slices
where c is known, as the RFCX winners masked their loss. A species without a positive or without a
negative among its weighted training slices gets a constant score: its share of positive training
slices (its prior), said once per fit in the log.

Cross-validation over the shards' folds (fold K scored by the model fitted on the others), then,
when the shards hold test recordings, a fit on every training slice scores sliding windows of
each test recording (every half window), a recording's score per species being the max over its
windows. Writes into OUT_DIR (re-running replaces them):

    settings.json    the resolved settings (written first; not config.json, which marks a run dir
                     for trainer.training.runs, so `make predict` never mistakes this dir for an unfinished run)
    oof.csv          one row per training slice: recording_id, fold, kind, row_index, slice_start,
                     y0..y{C-1} (labels), s0..s{C-1} (out-of-fold scores)
    submission.csv   with test shards: sample_submission.csv's rows and order
    report.json      written last: recording-level OOF LWLRAP (a recording scored by the max over its
                     slices, truth = species with a tp box in it) overall, per fold and per class,
                     slice-level OOF LWLRAP, test LWLRAP (with test_truth.csv), counts, timings, settings

Usage:

    python -m trainer.baseline.run --shards_dir data/shards/demo --out_dir runs/demo/baseline \
        [--window_seconds 5] [--unlabelled_weight 1] [--submission auto|yes|no] [--mel.n_mels 64] ...
    make baseline [SHARDS=dir] [ARGS="--unlabelled_weight 0"]

    from trainer.baseline.config import BaselineConfig
    from trainer.baseline.run import run_baseline
    report = run_baseline("data/shards/demo", "runs/demo/baseline", BaselineConfig())
    report["recording_lwlrap"], report["test_lwlrap"]
    load_report("runs/demo/baseline")              # the same dict from a finished run, or None
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core import checks, fs, outputs, schema, settings
from core import manifest as shards_layout
from core.errors import UserError, run_main
from core.manifest import Manifest
from trainer.baseline import band_features
from trainer.baseline.classifier import (
    cross_validate,
    describe_fit,
    fit_one_vs_rest,
    lwlrap_or_none,
    oof_metrics,
)
from trainer.baseline.config import BaselineConfig
from trainer.data import discovery
from trainer.evaluation import columns
from trainer.features import mel
from trainer.inference import submission
from trainer.training import run_layout as layout

SETTINGS_FILE, OOF_FILE, REPORT_FILE, SUBMISSION_FILE = (layout.BASELINE_SETTINGS, layout.BASELINE_OOF,
                                                     layout.BASELINE_REPORT, layout.BASELINE_SUBMISSION)
METHOD = "per-band mean/max/std of the log-mel ('db' scaling) -> StandardScaler + LogisticRegression, one per species"


# ---- outputs ----

def oof_table(table: band_features.SliceTable, scores: np.ndarray) -> pd.DataFrame:
    """oof.csv's rows: one per slice, in shard order."""
    num_classes = table.labels.shape[1]
    out = pd.DataFrame({"recording_id": table.recording_id, "fold": table.fold, "kind": table.kind,
                        "row_index": table.row_index, "slice_start": table.slice_start})
    labels = pd.DataFrame(table.labels, columns=columns.label_columns(num_classes))
    scored = pd.DataFrame(scores.astype(np.float32), columns=columns.score_columns(num_classes))
    return pd.concat([out, labels, scored], axis=1)


def _train_files(manifest: Manifest, shards_dir: str) -> dict[int, list[str]]:
    """{fold: paths of its shards (every kind)} for the folds with shards; at least two folds."""
    files = {k: discovery.absolute(shards_dir, manifest.train_files(k)) for k in manifest.folds_with_shards()}
    if len(files) < 2:
        raise UserError(f"{shards_dir} has training shards in {len(files)} fold(s) ({sorted(files)}); "
                        f"cross-validation needs at least two (shard with --num_folds >= 2)")
    discovery.check_exist([p for paths in files.values() for p in paths], shards_dir)
    return files


def _has_test(manifest: Manifest) -> bool:
    return bool(manifest.test) and manifest.test_examples != 0


def _test_part(shards_dir: str, manifest: Manifest, table: band_features.SliceTable,
               stats: band_features.BandStats, cfg: BaselineConfig, sample: pd.DataFrame,
               out_dir: str) -> dict[str, Any]:
    """Fit on every training slice, score the test recordings, write submission.csv; returns the test report."""
    start = time.monotonic()
    model = fit_one_vs_rest(table.features, table.labels, table.known, cfg)
    fit_seconds = time.monotonic() - start
    print(describe_fit("all folds (for the test set)", model, len(table)), flush=True)
    start = time.monotonic()
    stride = cfg.stride_samples(manifest.sample_rate)
    ids, features, owner = band_features.read_test_windows(shards_dir, manifest, stats, stride)
    submission.check_test_recordings(ids, sample, shards_dir, manifest)
    scores = submission.max_per_recording(model.score(features), owner, len(ids))  # [R, C]
    table_out = submission.build_submission(ids, scores, sample)
    path = submission.write_submission(table_out, fs.join(out_dir, SUBMISSION_FILE))
    result: dict[str, Any] = {"submission": path, "num_recordings": len(ids), "num_windows": int(len(owner)),
                              "constant_classes": model.constant_classes, "test_lwlrap": None,
                              "fit_seconds": round(fit_seconds, 2), "score_seconds": round(time.monotonic() - start, 2)}
    truth_path = fs.join(shards_dir, shards_layout.TEST_TRUTH)
    if fs.isfile(truth_path):
        truth, aligned = submission.align_truth(table_out, submission.read_score_table(truth_path))
        result["test_lwlrap"] = lwlrap_or_none(truth, aligned)
        result["truth"] = truth_path
    print(f"wrote {path} ({len(ids)} recordings, {len(owner)} windows)"
          + (f"; test LWLRAP {result['test_lwlrap']:.4f}" if result["test_lwlrap"] is not None else ""), flush=True)
    return result


def run_baseline(shards_dir: str, out_dir: str, cfg: BaselineConfig = BaselineConfig()) -> dict[str, Any]:
    """Cross-validates the baseline on the shards, scores the test set; writes OUT_DIR/*, returns the report."""
    started = time.monotonic()
    shards_dir, out_dir = str(shards_dir), str(out_dir)
    checks.output_dir("--out_dir", out_dir)  # a file or read-only dir fails before any work
    outputs.refuse_inside("--out_dir", out_dir)
    manifest = discovery.read_manifest(shards_dir)
    num_classes, sample_rate = manifest.num_classes, manifest.sample_rate
    mel_cfg = cfg.mel_config(sample_rate)
    window = cfg.window_samples(sample_rate)
    files = _train_files(manifest, shards_dir)
    do_test = cfg.submission == "yes" or (cfg.submission == "auto" and _has_test(manifest))
    if do_test and not _has_test(manifest):
        raise UserError(f"--submission yes but {shards_dir} holds no test examples; shard a dataset with a test/ "
                        f"dir, or pass --submission auto|no")
    sample = submission.read_sample_submission(shards_dir, num_classes) if do_test else None  # before any work

    fs.makedirs(out_dir)
    for name in (REPORT_FILE, OOF_FILE, SUBMISSION_FILE):  # never leave an earlier run's output beside this one
        fs.remove(fs.join(out_dir, name))
    resolved = {"baseline": dataclasses.asdict(cfg), "mel": dataclasses.asdict(mel_cfg), "shards_dir": shards_dir,
                "window_samples": window, "stride_samples": cfg.stride_samples(sample_rate),
                "num_classes": num_classes, "sample_rate": sample_rate, "method": METHOD}
    fs.write_json(fs.join(out_dir, SETTINGS_FILE), resolved)
    if mel_cfg.fmax < mel.MelConfig.fmax:
        print(f"log-mel fmax lowered to {mel_cfg.fmax:g} Hz (Nyquist of the shards' {sample_rate} Hz)")

    stats = band_features.BandStats(mel_cfg, window, cfg.batch_size)
    total = sum(manifest.examples(k) or 0 for k in files) or None
    start = time.monotonic()
    table = band_features.read_train_slices(files, num_classes, sample_rate, stats, total)
    read_seconds = time.monotonic() - start
    if not len(table):
        raise UserError(f"the training shards of {shards_dir} hold no slices")
    if total is not None and len(table) != total:  # as the trainer's reads: never fewer slices unnoticed
        raise discovery.ShardsError(f"the training shards of {shards_dir} hold {len(table)} slices but manifest.json "
                                    f"counts {total}; a file was replaced or cut after `make shards`: re-run it")

    start = time.monotonic()
    scores, fold_info = cross_validate(table, cfg)
    cv_seconds = time.monotonic() - start
    fs.write_csv(oof_table(table, scores), fs.join(out_dir, OOF_FILE))
    report: dict[str, Any] = {"method": METHOD, **oof_metrics(table, scores)}
    for fold, entry in fold_info.items():
        report["folds"].setdefault(fold, {}).update(entry)
    report["slices_by_kind"] = {k: int((table.kind == k).sum()) for k in schema.SLICE_KINDS}
    print(f"out-of-fold LWLRAP: recordings {_fmt(report['recording_lwlrap'])} "
          f"({report['num_recordings_with_positive']} with a positive), slices {_fmt(report['slice_lwlrap'])}; "
          + ", ".join(f"fold {k} {_fmt(v['recording_lwlrap'])}" for k, v in report["folds"].items()), flush=True)

    report["test"] = _test_part(shards_dir, manifest, table, stats, cfg, sample, out_dir) if do_test else None
    report["test_lwlrap"] = report["test"]["test_lwlrap"] if report["test"] else None
    report["timings"] = {"read_train_seconds": round(read_seconds, 2), "cv_seconds": round(cv_seconds, 2),
                         "total_seconds": round(time.monotonic() - started, 2)}
    report["settings"] = resolved
    fs.write_json(fs.join(out_dir, REPORT_FILE), report)
    print(f"baseline report in {fs.join(out_dir, REPORT_FILE)} ({report['timings']['total_seconds']:.0f} s)")
    return report


load_report = layout.load_baseline_report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# ---- command line ----

def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, BaselineConfig]:
    p = checks.ArgumentParser(prog="python -m trainer.baseline.run", allow_abbrev=False,
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--shards_dir", required=True, help="shards dir of pipeline.shards (schema version 2)")
    p.add_argument("--out_dir", required=True, help="where settings.json, oof.csv, report.json, submission.csv go")
    settings.add_flags(p, BaselineConfig, "baseline settings (saved as OUT_DIR/settings.json)")
    args = p.parse_args(argv)
    return args, settings.apply_overrides(BaselineConfig(), settings.flag_overrides(args, BaselineConfig),
                                           flags=True)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, cfg = parse_args(argv)
    return run_baseline(args.shards_dir, args.out_dir, cfg)


if __name__ == "__main__":
    run_main(main)
