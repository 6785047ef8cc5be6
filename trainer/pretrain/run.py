"""Contrastive pretraining of the backbone on the shards' unlabelled audio, for the folds to start from.

    python -m trainer.pretrain --shards_dir DIR --out_dir DIR [--preset auto|full|cpu|tiny] [--config FILE]
        [every training flag: the encoder, input and augmentation the folds will use, e.g. --head_freq_pool max]
        [--pretrain.epochs 10] [--pretrain.steps_per_epoch 60] [--pretrain.batch_size 32]
        [--pretrain.temperature 0.1] [--pretrain.max_shift_seconds 0.5] [--pretrain.test_share 0.4] [--overwrite]
    make pretrain [SHARDS=dir] [PRETRAIN_DIR=runs/<shards>/pretrain] [ARGS='--preset cpu']
    make cv ARGS='--preset cpu --init_from runs/<shards>/pretrain'    # the folds fine-tune from it

Pairs of views of one window (trainer.pretrain.views: the training slices of every fold and the whole test
recordings, labels never read) train the classifier's trunk with a projection on NT-Xent
(trainer.pretrain.contrastive): each view must find its partner among the batch's other windows, across
background mixing, noise, gain and the other augmentations. The audio of every fold and of the test set is
used, as it carries no labels: a fold's validation figures then come from a model that heard (but was not
told about) its validation recordings, as it heard the test recordings.

OUT_DIR (names: trainer.training.run_layout): pretrain.json (resolved TrainConfig and PretrainConfig),
encoder.keras (trunk + projection), pretrain_history.csv (loss and pair_accuracy per epoch: the share of
views whose nearest neighbour in the batch is their partner), pretrain_summary.json (written last).
A finished OUT_DIR is refused unless --overwrite; an interrupted one starts over.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from typing import Any, Sequence

import keras

from core import checks, fs, outputs, settings
from core.errors import UserError, run_main
from trainer.data import discovery
from trainer.features import placement as mel_placement
from trainer.model import network, strategy
from trainer.pretrain import contrastive, encoder, views
from trainer.pretrain.config import PretrainConfig, PretrainFlags
from trainer.recipe import config as config_lib
from trainer.recipe.config import TrainConfig
from trainer.training import callbacks, run_guard, train
from trainer.training import run_layout as layout

log = logging.getLogger("trainer.pretrain.run")

_BAND_STATS_BATCHES = 8  # pair batches whose first views give band_norm's statistics


def pretrain(cfg: TrainConfig, pcfg: PretrainConfig, shards_dir: str, out_dir: str, *,
             overwrite: bool = False) -> dict[str, Any]:
    """Pretrains cfg's trunk on the shards' audio into out_dir; returns the summary (also pretrain_summary.json)."""
    started = time.monotonic()
    checks.output_dir("--out_dir", out_dir)
    outputs.refuse_inside("--out_dir", out_dir)
    if fs.exists(layout.path(out_dir, layout.PRETRAIN_SUMMARY)) and not overwrite:
        raise UserError(f"{out_dir} already holds a finished pretraining; pass --overwrite to run it again or "
                        f"choose another --out_dir")
    cfg = dataclasses.replace(cfg, mel=dataclasses.replace(cfg.mel, device=mel_placement.HOST))
    shape = discovery.input_shape(cfg)
    network.check_input_shape(cfg, shape)
    sources = views.find_sources(shards_dir, cfg)
    placement = strategy.resolve(cfg.strategy, cfg.tpu)
    global_batch = pcfg.batch_size * placement.num_replicas
    fs.makedirs(out_dir)
    for name in (layout.PRETRAIN_SUMMARY, layout.ENCODER, layout.PRETRAIN_HISTORY):
        fs.remove(layout.path(out_dir, name))
    fs.write_json(layout.path(out_dir, layout.PRETRAIN_CONFIG),
                  {"train": config_lib.config_to_dict(cfg), "pretrain": dataclasses.asdict(pcfg)})
    previous_policy = keras.mixed_precision.global_policy()
    try:
        precision = strategy.set_precision(placement, cfg.mixed_precision)
        keras.utils.set_random_seed(cfg.seed)
        log.info("pretraining %s on %d training and %d test shard files: %d epochs x %d steps of %d pairs, input %s, "
                 "%s strategy x %d replicas, %s", cfg.backbone, len(sources.train_files), len(sources.test_files),
                 pcfg.epochs, pcfg.steps_per_epoch, global_batch, shape, placement.name, placement.num_replicas,
                 precision)
        with discovery.naming_a_corrupt_shard_of(sources.train_files + sources.test_files):
            stats = None
            if cfg.band_norm:
                first = views.pair_dataset(sources, cfg, pcfg, global_batch, _BAND_STATS_BATCHES)
                stats = train.band_moments(x[encoder.VIEW_A].numpy() for x, _ in first)  # [n_mels] each
            with placement.strategy.scope():
                enc = encoder.build_encoder(cfg, pcfg, shape, stats)
                pairs = encoder.build_pair_model(enc)
                schedule_cfg = dataclasses.replace(cfg, epochs=pcfg.epochs, learning_rate=pcfg.learning_rate,
                                                   lr_schedule="cosine", warmup_epochs=1.0, optimizer="adam",
                                                   ema_momentum=0.0)
                pairs.compile(optimizer=network.make_optimizer(schedule_cfg, pcfg.steps_per_epoch),
                              loss=contrastive.PairContrastiveLoss(pcfg.temperature),
                              metrics=[keras.metrics.MeanMetricWrapper(contrastive.pair_accuracy,
                                                                       name="pair_accuracy")])
            pairs.fit(views.pair_dataset(sources, cfg, pcfg, global_batch), epochs=pcfg.epochs, shuffle=False,
                      steps_per_epoch=pcfg.steps_per_epoch, verbose=cfg.verbose,
                      callbacks=[callbacks.HistoryLogger(layout.path(out_dir, layout.PRETRAIN_HISTORY))])
            history = pairs.history.history
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    tmp = layout.path(out_dir, "encoder.tmp.keras")
    enc.save(tmp)
    fs.rename(tmp, layout.path(out_dir, layout.ENCODER))  # a cut-off save never leaves a half-written encoder
    summary = {
        "epochs": pcfg.epochs, "steps_per_epoch": pcfg.steps_per_epoch, "global_batch_size": global_batch,
        "final_loss": float(history["loss"][-1]), "final_pair_accuracy": float(history["pair_accuracy"][-1]),
        "chance_pair_accuracy": 1.0 / pcfg.batch_size,
        "train_files": len(sources.train_files), "test_files": len(sources.test_files),
        "input_shape": list(shape), "strategy": placement.name, "num_replicas": placement.num_replicas,
        "precision": precision, "preset": cfg.from_preset, "elapsed_seconds": round(time.monotonic() - started, 3),
        "shards_dir": shards_dir, "shards_id": run_guard.shards_id(shards_dir),
    }
    fs.write_json(layout.path(out_dir, layout.PRETRAIN_SUMMARY), summary)  # last: the pretraining is complete
    log.info("pretraining done: loss %.3f, pair accuracy %.3f (chance %.3f); wrote %s", summary["final_loss"],
             summary["final_pair_accuracy"], summary["chance_pair_accuracy"], out_dir)
    return summary


def build_parser() -> argparse.ArgumentParser:
    """trainer.training.train's flags (preset, config file, every TrainConfig field) and --pretrain.* ones."""
    parser = checks.ArgumentParser(prog="python -m trainer.pretrain", description=__doc__.split("\n\n")[0],
                                   parents=[train.build_parser()], conflict_handler="resolve")
    for flag in ("--fold", "--run_dir"):  # the fold's flags; pretraining reads every fold
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--out_dir", required=True, help="where encoder.keras and its records go")
    parser.add_argument("--overwrite", action="store_true", help="run again into an out_dir holding a finished one")
    settings.add_flags(parser, PretrainFlags, "pretraining (contrastive) settings")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig, PretrainConfig]:
    args, cfg = train.parse_args(argv, build_parser())
    if args.fold is not None or args.run_dir is not None:
        raise UserError("--fold and --run_dir are trainer.training.train's; pretraining reads every fold into "
                        "--out_dir")
    flags = settings.apply_overrides(PretrainFlags(), settings.flag_overrides(args, PretrainFlags), flags=True)
    return args, cfg, flags.pretrain


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, cfg, pcfg = parse_args(argv)
    return pretrain(cfg, pcfg, args.shards_dir, args.out_dir, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
