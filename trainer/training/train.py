"""Trains one cross-validation fold: the classifier on log-mels of the shards, best model by recording-level LWLRAP.

    python -m trainer.training.train --shards_dir DIR --fold K --run_dir DIR [--preset auto|full|cpu|tiny]
        [--config FILE] [--epochs N] [--steps_per_epoch S] [--batch_size B] [--unlabelled_weight W]
        [--monitor val_rec_lwlrap|val_lwlrap|val_loss] [--strategy auto|default|mirrored|tpu]
        [--mixed_precision] [--mel.device auto|host|model] [--mel.n_mels 64] [--augment.mixup_p 0.5] ...
        [--init_from PRETRAIN_DIR] [--overwrite]
    python -m trainer.training.train --help        # every flag (one per config field) with its default
    make train FOLD=0 [SHARDS=dir] [RUN_DIR=dir] [ARGS='--preset cpu']

Trains on the shards of every fold but K (tp and fp/background slices drawn by negative_fraction,
see trainer.data.inputs) and validates on every slice of fold K after each epoch (trainer.training.validation).
The log-mel is computed by the input pipeline on the host CPU or, to feed an accelerator, by the model
as its first layer (`--mel.device`, default auto = the model when a GPU/TPU is present:
trainer.features.placement, trainer.model.front_end); either way best.keras takes log-mels.
With --init_from (a finished `make pretrain` dir) the backbone starts from the pretrained encoder's weights
(trainer.model.transfer), the head from random ones.
Settings: preset < --config JSON < flags (see trainer.recipe.config). run_dir receives:

    config.json          the resolved TrainConfig (written first; `--config` it to reproduce the run;
                         mel.device holds the placement "auto" chose)
    backup/              BackupAndRestore state (weights and optimizer state, epochs done) while
                         training; run the same command again to resume
    checkpoints/last.weights.h5  the weights after the latest epoch (no optimizer state; load them with
                         `net.load_weights(path)` into trainer.model.network.build_model's architecture)
    best.keras           the model of the best epoch by --monitor (input [B, n_mels, frames, 1])
    history.csv          one row per epoch (0-based `epoch`): loss, lwlrap, val_loss, val_lwlrap, val_rec_lwlrap
    logs/                TensorBoard logs (`tensorboard --logdir run_dir/logs`)
    val_predictions.csv  every validation slice scored by best.keras: recording_id,kind,row_index,
                         slice_start,fold,offset,y* (labels),w* (loss weights),s* (scores)
    curves.png           loss and LWLRAP per epoch: train, validation slices, validation recordings
    summary.json         written last (its presence = the run is complete): fold, monitor, best_epoch
                         (1-based), val_rec_lwlrap / val_lwlrap / val_loss of best.keras, epochs_run,
                         example counts per kind, elapsed_seconds, strategy, mel_device, preset, ...

The names are trainer.training.run_layout's. A resumed run continues the early-stopping patience count of
the interrupted one (trainer.training.callbacks.ResumableEarlyStopping). Settings that may differ on resumption:
trainer.recipe.config.RESUMABLE_FIELDS.

A finished run_dir is refused unless --overwrite. Bad input (missing shards, unknown fold, other
schema version, corrupt shard, unknown config key, window longer than the slices) ends with one
`error:` line and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import time
from typing import Any, Iterable, Sequence

import keras
import numpy as np
import pandas as pd

from core import checks, fs, outputs, schema
from core.errors import UserError, run_main
from trainer.data import discovery, inputs
from trainer.features import placement as mel_placement
from trainer.model import front_end, network, strategy, transfer
from trainer.pictures import plots
from trainer.recipe import config as config_lib
from trainer.recipe.config import TrainConfig
from trainer.training import callbacks as callbacks_lib
from trainer.training import run_guard, validation
from trainer.training import run_layout as layout
from trainer.training.run_layout import (
    BACKUP,
    BEST_MODEL,
    CURVES,
    SUMMARY,
    VAL_PREDICTIONS,
)

log = logging.getLogger("trainer.training.train")

_BACKUP_METADATA = "training_metadata.json"  # BackupAndRestore's: {"epoch": epochs finished, "batch": ...}


def _backup_epoch(run_dir: str) -> int | None:
    """Epochs finished by an interrupted run (from BackupAndRestore's metadata), None if none."""
    meta = layout.path(run_dir, fs.join(layout.BACKUP, _BACKUP_METADATA))
    run_guard.restore_previous_backup(run_dir)  # a kill while the latest was written: the previous epoch's
    if not fs.exists(meta):
        return None
    try:
        return int(fs.read_json(meta)["epoch"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{meta} is damaged ({e!r}), so the interrupted run cannot resume; pass --overwrite "
                        f"to start {run_dir} over") from e


def prepare_run_dir(run_dir: str, cfg: TrainConfig, overwrite: bool, identity: dict | None = None) -> int:
    """Makes run_dir ready and returns the epoch training starts at (> 0 when resuming its `identity`)."""
    fs.makedirs(run_dir)
    if layout.is_complete(run_dir) and not overwrite:
        raise UserError(f"{run_dir} already holds a finished run ({layout.SUMMARY}); pass --overwrite to train it "
                        f"again or choose another --run_dir")
    resume_at = None if overwrite else _backup_epoch(run_dir)
    if resume_at is not None and layout.has_config(run_dir):
        differences = config_lib.config_differences(config_lib.load_run_config(run_dir), cfg,
                                                    ignore=config_lib.RESUMABLE_FIELDS)
        if differences:
            raise UserError(f"{run_dir} holds an interrupted run with another config ({'; '.join(differences[:5])})"
                            f"; repeat its command to resume it, or pass --overwrite to start over")
    if resume_at is not None and identity is not None:
        run_guard.check_resume(run_dir, identity)
    if resume_at is None:
        for name in layout.TRAINING_OUTPUTS:
            fs.remove(layout.path(run_dir, name))
        return 0
    log.info("resuming the interrupted run in %s after epoch %d", run_dir, resume_at)
    return resume_at


def resolve_mel_device(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with --mel.device "auto" resolved (trainer.features.placement), saved so as config.json.

    A run resumed where auto resolves otherwise is then refused by the config check (its backup holds
    the training model of the other placement) instead of failing inside Keras.
    """
    device, why = mel_placement.resolve(cfg.mel.device)
    log.info("log-mel computed %s (--mel.device %s: %s)",
             "in the model" if device == mel_placement.MODEL else "in the input pipeline", cfg.mel.device, why)
    return dataclasses.replace(cfg, mel=dataclasses.replace(cfg.mel, device=device))


@dataclasses.dataclass(frozen=True)
class Batching:
    """Batch sizes of one run: global = per-replica batch x replicas."""

    global_batch: int
    steps_per_epoch: int
    eval_batch: int
    replicas: int = 1


def plan_batches(fold_inputs: discovery.FoldInputs, cfg: TrainConfig, replicas: int) -> Batching:
    """Training and validation batch sizes and steps per epoch; UserError when a fold is too small."""
    global_batch = cfg.batch_size * replicas
    num_tp = fold_inputs.num_train_by_kind.get(schema.KIND_TP, fold_inputs.num_train)
    if num_tp < global_batch:
        raise UserError(f"fold {fold_inputs.fold} leaves {num_tp} tp training slices, fewer than one global "
                        f"batch of {global_batch} ({cfg.batch_size} x {replicas} replicas); lower --batch_size")
    steps = cfg.steps_per_epoch
    if steps == 0:  # every tp slice drawn about once per epoch
        has_negatives = any(fold_inputs.num_train_by_kind.get(k, 0) for k in discovery.NEGATIVE_KINDS)
        tp_share = 1.0 - (cfg.negative_fraction if has_negatives else 0.0)
        steps = max(1, math.ceil(num_tp / (global_batch * tp_share)))
    if fold_inputs.num_val < replicas:
        raise UserError(f"fold {fold_inputs.fold} has {fold_inputs.num_val} validation examples, fewer than the "
                        f"{replicas} replicas")
    # Under a distribution strategy Keras builds the model from the first batch averaged across
    # replicas, which fails when that batch splits unevenly: a validation set smaller than one
    # global batch gets a first batch of whole per-replica shares (the rest follows in a second).
    eval_batch = global_batch if fold_inputs.num_val >= global_batch else fold_inputs.num_val // replicas * replicas
    return Batching(global_batch, steps, eval_batch, replicas)


# Batches of the training stream whose log-mels give the per-band statistics of band_norm.
_BAND_STATS_BATCHES = 16


def band_statistics(fold_inputs: discovery.FoldInputs, cfg: TrainConfig, batching: Batching) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) float64 [n_mels] of the model inputs over the first batches of the training stream.

    The stream is the seeded one training starts with (augmentation included), so a resumed run
    computes the same numbers (and restores them with the weights anyway). With the log-mel in the
    model, the training front end computes the same log-mels from the same draws (training=True).
    """
    stream = inputs.train_dataset(fold_inputs.train_files_by_kind, dataclasses.replace(cfg, epochs=1),
                                  batching.global_batch, min(batching.steps_per_epoch, _BAND_STATS_BATCHES),
                                  replicas=batching.replicas, species_counts=fold_inputs.manifest.species_examples())
    front = (front_end.TrainingFrontEnd(cfg.mel, cfg.augment, front_end.max_pitch_steps(cfg))
             if inputs.mel_on_model(cfg) else None)
    # x [B, n_mels, frames, 1] (or the model-side inputs, turned into log-mels)
    return band_moments((x if front is None else front(x, training=True)).numpy() for x, _ in stream)


def band_moments(batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) float64 [n_mels] over log-mel batches [B, n_mels, frames, C]; variance floored at 1e-6."""
    total = sum_sq = 0.0
    count = 0
    for x in batches:
        x = np.asarray(x, np.float64)
        total = total + x.sum(axis=(0, 2, 3))
        sum_sq = sum_sq + np.square(x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if not count:
        raise ValueError("band_moments needs at least one batch")
    mean = total / count
    return mean, np.maximum(sum_sq / count - mean**2, 1e-6)


def write_results(net: keras.Model, validator: validation.RecordingValidation, cfg: TrainConfig,
                  run_dir: str) -> tuple[pd.DataFrame, dict[str, float], dict[str, np.ndarray]]:
    """val_predictions.csv (scored by the best epoch's weights) and curves.png.

    Returns (history, metrics of the best weights, the validation slices' metadata columns).
    """
    history = layout.read_history(run_dir, cfg.monitor)
    if history.empty or not fs.exists(layout.path(run_dir, BEST_MODEL)):
        raise RuntimeError(f"training of {run_dir} ended without a history or {BEST_MODEL}")
    # The best epoch's weights (best.keras is the classifier, also inside a training model with the log-mel).
    front_end.classifier_of(net).load_weights(layout.path(run_dir, BEST_MODEL))
    validator.set_model(net)
    meta, scores = validator.predict()
    table = validation.prediction_table(meta, scores, cfg.num_classes)
    fs.write_csv(table, layout.path(run_dir, VAL_PREDICTIONS))
    plots.plot_curves(history, layout.path(run_dir, CURVES))
    return history, validation.metrics(meta["recording_id"], meta["y"], scores, cfg.num_classes), meta


# The settings that shape the trunk: a pretraining made with other values would fill only part of it.
TRUNK_FIELDS = ("backbone", "cnn_width", "cnn_blocks", "cnn_convs", "freq_channel", "floor_channel")


def pretrained_encoder_path(cfg: TrainConfig) -> str:
    """The encoder.keras of cfg.init_from, a finished pretraining of the same trunk; UserError otherwise."""
    pretrain_dir = cfg.init_from
    path = layout.path(pretrain_dir, layout.ENCODER)
    settings_path = layout.path(pretrain_dir, layout.PRETRAIN_CONFIG)
    if not (fs.isfile(path) and fs.exists(layout.path(pretrain_dir, layout.PRETRAIN_SUMMARY))
            and fs.isfile(settings_path)):
        raise UserError(f"--init_from {pretrain_dir} holds no finished pretraining ({layout.ENCODER}, "
                        f"{layout.PRETRAIN_CONFIG} and {layout.PRETRAIN_SUMMARY}); run `make pretrain` into it first")
    pretrained = fs.read_json(settings_path).get("train", {})
    differ = [f"--{k} {pretrained.get(k)!r} (the fold: {getattr(cfg, k)!r})" for k in TRUNK_FIELDS
              if pretrained.get(k) != getattr(cfg, k)]
    if differ:
        raise UserError(f"--init_from {pretrain_dir} pretrained another trunk: {'; '.join(differ)}; pretrain with "
                        f"the flags the folds train with")
    return path


def _fit(net: keras.Model, fold_inputs: discovery.FoldInputs, cfg: TrainConfig, run_dir: str, initial_epoch: int,
         batching: Batching, validator: validation.RecordingValidation,
         extra_callbacks: Sequence[keras.callbacks.Callback]) -> None:
    history = layout.read_history(run_dir, cfg.monitor)
    # Rows of epochs the backup does not hold (a kill between CSVLogger and BackupAndRestore) are redone.
    callbacks = callbacks_lib.run_callbacks(run_dir, cfg, history[history["epoch"] < initial_epoch], validator)
    early = [c for c in callbacks if isinstance(c, callbacks_lib.ResumableEarlyStopping)]
    if initial_epoch and early and early[0].stopped_before(net):
        log.info("early stopping had ended %s after epoch %d before it was interrupted; not training further",
                 run_dir, initial_epoch)
        return
    train = inputs.train_dataset(fold_inputs.train_files_by_kind, cfg, batching.global_batch,
                                 batching.steps_per_epoch, initial_epoch, fold_inputs.num_train_by_kind,
                                 replicas=batching.replicas, species_counts=fold_inputs.manifest.species_examples())
    net.fit(train, epochs=cfg.epochs, steps_per_epoch=batching.steps_per_epoch, shuffle=False,
            callbacks=callbacks + list(extra_callbacks), verbose=cfg.verbose)


def train_fold(cfg: TrainConfig, shards_dir: str, fold: int, run_dir: str, *, overwrite: bool = False,
               callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Trains (or resumes) fold `fold` into `run_dir` and returns the summary (also summary.json).

    `callbacks` are appended to the run's own (after them, so they see each epoch's saved state).
    """
    started = time.monotonic()
    checks.output_dir("--run_dir", run_dir)  # a file or read-only dir fails now, not after the data checks
    outputs.refuse_inside("--run_dir", run_dir, own=outputs.RUN)
    if importlib.util.find_spec("tensorboard") is None:  # Keras fails only at the first epoch's end
        raise UserError("the TensorBoard logs of a run need the tensorboard package: `pip install tensorboard` "
                        "(`make venv` installs it)")
    shape = discovery.input_shape(cfg)
    network.check_input_shape(cfg, shape)
    fold_inputs = discovery.prepare_fold(shards_dir, fold, cfg)  # every input check before run_dir is touched
    if cfg.init_from:
        pretrained_encoder_path(cfg)
    placement = strategy.resolve(cfg.strategy, cfg.tpu)
    cfg = resolve_mel_device(cfg)  # after the strategy: a TPU is visible once its system is initialised
    batching = plan_batches(fold_inputs, cfg, placement.num_replicas)
    with run_guard.locked(run_dir, shards_dir, fold) as identity:  # one trainer.training.train per run dir
        initial_epoch = prepare_run_dir(run_dir, cfg, overwrite, identity)
        config_lib.save_config(cfg, layout.path(run_dir, layout.CONFIG))
        run_guard.write_identity(run_dir, identity)
        previous_policy = keras.mixed_precision.global_policy()
        try:
            return _train(cfg, fold_inputs, placement, batching, run_dir, initial_epoch, callbacks, started)
        finally:
            # A global: leave it as found (trainer.training.cv trains several folds in one process).
            keras.mixed_precision.set_global_policy(previous_policy)


def _train(cfg: TrainConfig, fold_inputs: discovery.FoldInputs, placement: strategy.Placement, batching: Batching,
           run_dir: str, initial_epoch: int, callbacks: Sequence[keras.callbacks.Callback],
           started: float) -> dict[str, Any]:
    """train_fold after its checks: model, fit, results, summary.json."""
    fold, shape = fold_inputs.fold, discovery.input_shape(cfg)
    precision = strategy.set_precision(placement, cfg.mixed_precision)
    keras.utils.set_random_seed(cfg.seed)
    log.info("fold %d (%s preset): %d train slices %s / %d val, input %s, %s strategy x %d replicas, global "
             "batch %d, %d steps per epoch, %s", fold, cfg.from_preset, fold_inputs.num_train, fold_inputs.num_train_by_kind,
             fold_inputs.num_val, shape, placement.name, placement.num_replicas, batching.global_batch,
             batching.steps_per_epoch, precision)

    # Every read of the shards below: a file damaged past its first record is named, not a traceback.
    with discovery.naming_a_corrupt_shard_of(fold_inputs.train_files + fold_inputs.val_files):
        band_stats = band_statistics(fold_inputs, cfg, batching) if cfg.band_norm else None
        with placement.strategy.scope():
            net = network.build_model(cfg, shape, band_stats)  # the classifier: log-mel in
            if cfg.init_from and not initial_epoch:  # a resumed run restores its own weights from the backup
                # Checked by train_fold before the run dir was touched (pretrained_encoder_path).
                encoder = keras.models.load_model(layout.path(cfg.init_from, layout.ENCODER), compile=False)
                copied = transfer.copy_shared_weights(encoder, net)
                log.info("backbone from the pretrained encoder of %s: %d layers' weights copied", cfg.init_from,
                         len(copied))
            if inputs.mel_on_model(cfg):
                net = front_end.build_training_model(cfg, net)  # waveforms in (trainer.model.front_end)
            network.compile_model(net, cfg, batching.steps_per_epoch)
        validator = validation.RecordingValidation(fold_inputs.val_files, cfg, batching.eval_batch,
                                                   fold_inputs.num_val)
        _fit(net, fold_inputs, cfg, run_dir, initial_epoch, batching, validator, callbacks)
        history, final, val_meta = write_results(net, validator, cfg, run_dir)
    best = callbacks_lib.best_row(history, cfg.monitor)
    kinds = sorted(set(val_meta["kind"]))
    summary = {
        "fold": fold,
        "monitor": cfg.monitor,
        "best_epoch": int(best["epoch"]) + 1,
        # The best epoch's logged values, and best.keras re-scored (equal up to rounding).
        **{f"best_{k}": float(best[k]) for k in ("val_rec_lwlrap", "val_lwlrap", "val_loss") if k in best},
        **final,
        "epochs_run": len(history),
        "stopped_early": len(history) < cfg.epochs,
        "num_train_examples": fold_inputs.num_train,
        "num_train_examples_by_kind": fold_inputs.num_train_by_kind,
        "num_val_examples": fold_inputs.num_val,
        "num_val_examples_by_kind": {k: int(np.sum(val_meta["kind"] == k)) for k in kinds},
        "num_val_recordings": int(len(set(val_meta["recording_id"]))),
        "resumed_from_epoch": initial_epoch,
        "elapsed_seconds": round(time.monotonic() - started, 3),  # of the invocation that finished the run
        "steps_per_epoch": batching.steps_per_epoch,
        "global_batch_size": batching.global_batch,
        "strategy": placement.name,
        "mel_device": cfg.mel.device,
        "num_replicas": placement.num_replicas,
        "precision": precision,
        "preset": cfg.from_preset,
        "input_shape": list(shape),
        "shards_dir": fold_inputs.shards_dir, "shards_id": run_guard.shards_id(fold_inputs.shards_dir),
    }
    fs.remove(layout.path(run_dir, BACKUP))
    fs.write_json(layout.path(run_dir, SUMMARY), summary)  # last: the run is complete
    log.info("fold %d: val recording LWLRAP %.4f, slice LWLRAP %.4f (best epoch %d of %d by %s); wrote %s", fold,
             summary["val_rec_lwlrap"], summary["val_lwlrap"], summary["best_epoch"], summary["epochs_run"],
             cfg.monitor, run_dir)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = checks.ArgumentParser(prog="python -m trainer.training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards_dir", required=True, help="output dir of pipeline.shards (with manifest.json)")
    parser.add_argument("--fold", type=int, required=True, help="validation fold; training uses the others")
    parser.add_argument("--run_dir", required=True, help="where config, checkpoints, logs and results go")
    parser.add_argument("--preset", default=config_lib.AUTO, choices=config_lib.PRESET_CHOICES,
                        help="auto (default): full with a GPU/TPU, else cpu; full: the seed's sizes (128 x 938 "
                             "input); cpu: sized to learn on 2 cores in minutes; tiny: the smallest, for tests")
    parser.add_argument("--config", dest="config_file", help="JSON file of settings (nested sections as objects)")
    parser.add_argument("--overwrite", action="store_true", help="retrain a run_dir that holds a finished run")
    config_lib.add_config_flags(parser)
    return parser


def parse_args(argv: Sequence[str] | None,
               parser: argparse.ArgumentParser | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    """Flags (of `parser`, default this module's) and the TrainConfig they resolve to (preset < --config < flags)."""
    args = (parser or build_parser()).parse_args(argv)
    return args, config_lib.resolve_config(args.preset, args.config_file, args)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, cfg = parse_args(argv)
    return train_fold(cfg, args.shards_dir, args.fold, args.run_dir, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
