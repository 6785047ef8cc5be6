"""Cross-validation: trains each fold into runs_root/foldK, then writes the out-of-fold report.

Fold K trains with seed --seed + K (fold_config; its config.json holds that seed), so the fold models
that `make predict` averages do not share their initial weights.

A fold whose run dir already holds summary.json (written last by trainer.training.train) is complete and
skipped; one that was cut off is resumed by training it again into the same run dir (the trainer's
BackupAndRestore picks up from the last finished epoch). A complete fold trained with a different
config is an error rather than silently mixed into the report. Then runs_root/cv/ gets oof.csv,
report.json, report.md, per_class.png, curves.png and confusion.png (trainer.training.report, which draws on
trainer.training.report_md and trainer.pictures.confusion).

Training flags are those of trainer.training.train (--preset, --config, --epochs, --mel.n_mels, ...) except
--overwrite: to retrain a complete fold, delete its run dir.

Usage:

    python -m trainer.training.cv --shards_dir data/shards/demo --folds 0 1 2 3 4 --runs_root runs/demo \
        [--preset tiny --epochs 1 ...]
    make cv [FOLDS="0 1 2 3 4"] [SHARDS=dir] [ARGS="--preset tiny --epochs 1"]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from collections import Counter
from typing import Any, Sequence

from core import checks, fs, outputs
from core.errors import UserError, run_main
from trainer.data import discovery
from trainer.recipe import config as config_lib
from trainer.recipe.config import TrainConfig
from trainer.training import report, run_guard, runs, train
from trainer.training import run_layout as layout

# Settings a complete fold may have been trained with other values of and still belong to this
# cross-validation: those a run may resume with, except epochs (a complete run is not resumed, so
# its number of epochs is part of what it learnt).
# Where the log-mel was computed (--mel.device) does not change what a finished fold learned.
_SAME_CV_IGNORES = (config_lib.RESUMABLE_FIELDS - {"epochs"}) | {"mel.device"}
CV_DIR, BASELINE_DIR = "cv", "baseline"


def fold_run_dir(runs_root: str, fold: int) -> str:
    return fs.join(runs_root, f"fold{fold}")


_SEEDS = 2**32  # TrainConfig.seed's range


def fold_config(cfg: TrainConfig, fold: int) -> TrainConfig:
    """`cfg` as fold `fold` trains it: seed --seed + fold, so the fold models of an ensemble start from their own
    initial weights and draw their own crops (fold models from one start made the same mistakes on unseen
    calls, and their average gained nothing; docs/results.md). Fold 0 keeps --seed."""
    return dataclasses.replace(cfg, seed=(cfg.seed + fold) % _SEEDS)


def cv_config(fold_cfg: TrainConfig, fold: int) -> TrainConfig:
    """The cross-validation's config from one of its fold runs' (fold_config undone)."""
    return dataclasses.replace(fold_cfg, seed=(fold_cfg.seed - fold) % _SEEDS)


def check_folds(folds: Sequence[int], shards_dir: str) -> None:
    """Every fold must be listed once and have shards (an unknown fold fails before any training)."""
    duplicated = sorted(f for f, n in Counter(folds).items() if n > 1)
    if duplicated:
        raise UserError(f"--folds lists fold(s) {duplicated} more than once")
    manifest = discovery.read_manifest(shards_dir)
    for fold in folds:
        discovery.fold_files(manifest, shards_dir, fold)


def run_cv(cfg: TrainConfig, shards_dir: str, folds: Sequence[int], runs_root: str) -> dict[str, Any]:
    """Trains the missing folds, then writes runs_root/cv/*; returns the CV report dict."""
    runs_root = str(runs_root)
    check_folds(folds, shards_dir)
    run_dirs = {fold: fold_run_dir(runs_root, fold) for fold in folds}
    cv_dir, baseline_dir = fs.join(runs_root, CV_DIR), fs.join(runs_root, BASELINE_DIR)
    for path in (runs_root, *run_dirs.values(), cv_dir):  # every output dir, before fold 0
        checks.output_dir("--runs_root", path)
    outputs.refuse_inside("--runs_root", runs_root)
    for fold, run_dir in run_dirs.items():
        fold_cfg = fold_config(cfg, fold)
        if runs.is_complete(run_dir):
            differences = config_lib.config_differences(config_lib.load_run_config(run_dir), fold_cfg,
                                                        ignore=_SAME_CV_IGNORES)
            if differences:
                raise UserError(
                    f"fold {fold} in {run_dir} is complete but was trained with another config "
                    f"({'; '.join(differences[:5])}); use another --runs_root or delete {run_dir}"
                )
            run_guard.check_complete(run_dir, run_guard.identity(shards_dir, fold))  # its fold, these shards
            print(f"fold {fold}: complete ({layout.path(run_dir, layout.SUMMARY)} present), skipped")
            continue
        print(f"fold {fold}: training into {run_dir}")
        train.train_fold(fold_cfg, shards_dir, fold, run_dir)
    result = report.write_cv_report(run_dirs, cv_dir, baseline_dir)
    folds_text = ", ".join(f"fold {k} {v['recording_lwlrap']:.4f}" for k, v in result["folds"].items())
    print(f"out-of-fold LWLRAP: recordings {result['recording_lwlrap']:.4f} over {result['num_recordings']} "
          f"({folds_text}), slices {result['overall_lwlrap']:.4f} over {result['num_examples']}")
    base = result["baseline"]
    if base:
        print(f"baseline on the same folds: recordings {base['recording_lwlrap']:.4f}, slices {base['lwlrap']:.4f}"
              f" ({base['dir']})")
    else:
        print(f"no baseline beside it: run `make baseline` (writes {baseline_dir})")
    if result.get("blend"):
        print(result["blend"].get("skipped") or f"blend with the baseline: {result['blend']['finding']}")
    print(f"report in {cv_dir}")
    return result


class _TrainOnlyFlag(argparse.Action):
    """A trainer.training.train flag that makes no sense here (cv picks each fold's run dir): an error naming the flag."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        parser.error(f"{option_string} is a flag of trainer.training.train; trainer.training.cv trains --folds into "
                     f"--runs_root/foldK (to retrain a complete fold, delete its run dir)")


def build_parser() -> argparse.ArgumentParser:
    """trainer.training.train's parser (every training flag, the same help) with --folds/--runs_root for --fold/--run_dir."""
    parser = checks.ArgumentParser(prog="python -m trainer.training.cv", description=__doc__.split("\n\n")[0],
                                   parents=[train.build_parser()], conflict_handler="resolve")
    # Re-declaring a flag replaces train's (conflict_handler="resolve"): not required, hidden, refused if given.
    for flag in ("--fold", "--run_dir"):
        parser.add_argument(flag, action=_TrainOnlyFlag, help=argparse.SUPPRESS)
    parser.add_argument("--overwrite", action=_TrainOnlyFlag, nargs=0, help=argparse.SUPPRESS)
    parser.add_argument("--folds", type=int, nargs="+", required=True, help="folds to train and report")
    parser.add_argument("--runs_root", required=True, help="fold K trains into RUNS_ROOT/foldK")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    return train.parse_args(argv, build_parser())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, cfg = parse_args(argv)
    return run_cv(cfg, args.shards_dir, args.folds, args.runs_root)


if __name__ == "__main__":
    run_main(main)
