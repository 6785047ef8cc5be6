"""Pseudo-label rounds: pseudo labels from the last round's fold runs -> a cross-validation trained on them.

Round 0 is a finished cross-validation (`make cv`: RUNS_ROOT/foldK). Round r (1..--rounds) lives in
OUT_ROOT/round{r} (OUT_ROOT defaults to RUNS_ROOT/pseudo):

    round{r}/soft_targets.csv   the sidecar (trainer.data.soft_targets) from round r-1's fold runs
                                (trainer.pseudo.label: each slice scored by the model that never trained on it)
    round{r}/soft_targets.json  what made it
    round{r}/foldK/             the fold runs, trained with round 0's config + --soft_targets the sidecar
    round{r}/cv/                their cross-validation report (trainer.training.cv)
    round{r}/submission.csv     the test prediction of the round's fold runs (+ .score.json with test truth)
    OUT_ROOT/rounds.json, rounds.md   every round's OOF (recordings, slices) and test LWLRAP

Resumable: a round's sidecar made from the same runs and shards is kept, complete folds are skipped
(trainer.training.cv), and a scored submission is kept; so re-running the command finishes what a kill
cut off. Round r's folds train the folds round 0 trained.

The OOF figures of rounds >= 1 lean optimistic: the pseudo labels a fold-k model trains on came from
models that trained on fold k's boxes. The test figure has no such leak.

Usage:

    python -m trainer.pseudo --shards_dir data/shards/demo --runs_root runs/demo [--rounds 1]
        [--out_root runs/demo/pseudo] [--soft_target_weight 1.0] [--stride_seconds 1.5]
    make pseudo [SHARDS=dir] [RUNS_ROOT=runs/<shards>] [ARGS="--rounds 2"]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, Sequence

from core import checks, fs
from core.errors import UserError, run_main
from trainer.data import soft_targets
from trainer.inference import predict
from trainer.inference.predict import PredictConfig
from trainer.pseudo import label
from trainer.recipe import config as config_lib
from trainer.training import cv, report, run_guard, runs

ROUNDS_JSON, ROUNDS_MD, SUBMISSION = "rounds.json", "rounds.md", "submission.csv"


def round_dir(out_root: str, r: int) -> str:
    return fs.join(out_root, f"round{r}")


def fold_runs(runs_root: str) -> dict[int, str]:
    """{fold: run dir} of the complete foldK runs of a cross-validation root."""
    found = {}
    for run_dir in runs.complete_runs_under(runs_root):
        name = fs.basename(run_dir)
        if name.startswith("fold") and name[4:].isdigit():
            found[int(name[4:])] = run_dir
    if not found:
        raise UserError(f"no complete foldK run under {runs_root}; run `make cv` first")
    return found


def _sidecar_is_current(path: str, run_dirs: Sequence[str], shards_dir: str) -> bool:
    meta = label.meta_path(path)
    if not (fs.isfile(path) and fs.isfile(meta)):
        return False
    made = fs.read_json(meta)
    ident = run_guard.shards_id(shards_dir)
    return made.get("shards_id") == ident and sorted(made.get("runs", {}).values()) == sorted(map(str, run_dirs))


def _test_score(root: str, run_dirs: Sequence[str], shards_dir: str, cfg: PredictConfig, make: bool) -> Any:
    """The round's test LWLRAP (None without test truth); predicts unless a scored submission exists."""
    output = fs.join(root, SUBMISSION)
    score_path = predict.side_path(output, "score")
    if fs.isfile(score_path):
        return fs.read_json(score_path).get("lwlrap")
    if not make:
        return None
    # The rounds compare the models themselves: never a blend with the baseline.
    alone = dataclasses.replace(cfg, blend_baseline="off")
    return predict.predict(list(run_dirs), shards_dir, output, alone).get("test_lwlrap")


def _figures(r: int, root: str, test: Any) -> dict[str, Any]:
    path = fs.join(root, cv.CV_DIR, report.REPORT_FILE)
    rep = fs.read_json(path) if fs.isfile(path) else {}
    return {"round": r, "runs_root": root, "oof_recording_lwlrap": rep.get("recording_lwlrap"),
            "oof_slice_lwlrap": rep.get("overall_lwlrap"), "test_lwlrap": test}


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}"


def write_rounds_report(out_root: str, rows: list[dict[str, Any]]) -> None:
    fs.write_json(fs.join(out_root, ROUNDS_JSON), {"rounds": rows})
    lines = ["# Pseudo-label rounds", "", "| round | runs root | OOF LWLRAP, recordings | OOF LWLRAP, slices | "
             "test LWLRAP |", "|---|---|---|---|---|"]
    lines += [f"| {x['round']} | {x['runs_root']} | {_fmt(x['oof_recording_lwlrap'])} | "
              f"{_fmt(x['oof_slice_lwlrap'])} | {_fmt(x['test_lwlrap'])} |" for x in rows]
    fs.write_text(fs.join(out_root, ROUNDS_MD), "\n".join(lines) + "\n")


def run_rounds(shards_dir: str, runs_root: str, rounds: int, out_root: str | None = None,
               soft_target_weight: float = 1.0, predict_cfg: PredictConfig = PredictConfig(),
               test: bool = True) -> list[dict[str, Any]]:
    """Runs (or resumes) rounds 1..`rounds` after the cross-validation in `runs_root`; returns every round's figures."""
    shards_dir, runs_root = str(shards_dir), str(runs_root)
    out_root = str(out_root) if out_root else fs.join(runs_root, "pseudo")
    if rounds < 1:
        raise UserError(f"--rounds must be >= 1, got {rounds}")
    checks.output_dir("--out_root", out_root)
    previous = fold_runs(runs_root)
    folds = sorted(previous)
    base_cfg = cv.cv_config(runs.open_run(previous[folds[0]]).config, folds[0])  # each fold's seed is redone by cv
    rows = [_figures(0, runs_root, _test_score(runs_root, list(previous.values()), shards_dir, predict_cfg, test))]
    for r in range(1, rounds + 1):
        root = round_dir(out_root, r)
        sidecar = fs.join(root, soft_targets.FILE)
        fs.makedirs(root)
        if _sidecar_is_current(sidecar, list(previous.values()), shards_dir):
            print(f"round {r}: {sidecar} is there, made from {runs_root if r == 1 else round_dir(out_root, r - 1)}; "
                  f"kept")
        else:
            print(f"round {r}: pseudo labels from {', '.join(previous[k] for k in folds)}", flush=True)
            label.pseudo_label(shards_dir, [previous[k] for k in folds], sidecar, predict_cfg)
        cfg = config_lib.apply_overrides(base_cfg, {"soft_targets": sidecar, "soft_target_weight": soft_target_weight})
        cv.run_cv(cfg, shards_dir, folds, root)
        previous = {k: cv.fold_run_dir(root, k) for k in folds}
        rows.append(_figures(r, root, _test_score(root, list(previous.values()), shards_dir, predict_cfg, test)))
        write_rounds_report(out_root, rows)
    for x in rows:
        print(f"round {x['round']}: OOF recordings {_fmt(x['oof_recording_lwlrap'])}, slices "
              f"{_fmt(x['oof_slice_lwlrap'])}; test {_fmt(x['test_lwlrap'])}  ({x['runs_root']})")
    print(f"rounds report in {fs.join(out_root, ROUNDS_MD)}")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = checks.ArgumentParser(prog="python -m trainer.pseudo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards_dir", required=True)
    parser.add_argument("--runs_root", required=True, help="round 0: a finished cross-validation (foldK runs)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out_root", default=None, help="round r goes to OUT_ROOT/round{r} (default RUNS_ROOT/pseudo)")
    parser.add_argument("--soft_target_weight", type=float, default=1.0,
                        help="loss weight of a pseudo-labelled species (TrainConfig.soft_target_weight)")
    parser.add_argument("--stride_seconds", type=float, default=None,
                        help="stride of the scored windows (default half the run's window)")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per model call")
    parser.add_argument("--no_test", action="store_true", help="skip each round's test prediction")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.soft_target_weight <= 1.0:
        raise UserError(f"--soft_target_weight must be in [0, 1], got {args.soft_target_weight}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {args.batch_size}")
    return run_rounds(args.shards_dir, args.runs_root, args.rounds, args.out_root, args.soft_target_weight,
                      PredictConfig(args.stride_seconds, args.batch_size), test=not args.no_test)


if __name__ == "__main__":
    run_main(main)
