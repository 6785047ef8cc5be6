"""The run dir's layout: the one place that names the files trainer.training.train writes and the rest reads.

Written by trainer.training.train (and trainer.inference.serving); read by trainer.training.runs, trainer.inference.predict, trainer.training.cv,
trainer.training.report and trainer.data.inspect_examples. Inference modules import names from here, never from trainer.training.train.

    RUN_DIR/
      config.json              resolved TrainConfig, written first (`--config` it to reproduce the run)
      backup/                  BackupAndRestore state while training (resume by running the same command)
      checkpoints/last.weights.h5  weights after the latest epoch (weights only: no optimizer state)
      best.keras               full model of the best epoch by --monitor: [B, n_mels, frames, 1] -> [B, C]
      history.csv              one row per epoch (0-based `epoch`)
      logs/                    TensorBoard logs
      val_predictions.csv      every validation slice scored by best.keras (trainer.training.validation columns)
      curves.png               loss and LWLRAP per epoch
      serving.keras            waveform [B, window_samples] -> scores [B, C] (trainer.inference.serving)
      summary.json             written last: its presence means the run is complete

    PRETRAIN_DIR/ (trainer.pretrain.run; --init_from of a run)
      pretrain.json            the resolved TrainConfig (encoder, input, augmentation) and PretrainConfig
      encoder.keras            trunk + projection of the last epoch: [B, n_mels, frames, 1] -> [B, E]
      pretrain_history.csv     one row per epoch: loss, pair_accuracy
      pretrain_summary.json    written last: its presence means the pretraining is complete

    from trainer.training import run_layout
    layout.path(run_dir, layout.SUMMARY)
    history = layout.read_history(run_dir)      # pandas, one row per epoch
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from core import fs, outputs  # the names that mark a run dir for the other commands
from core.errors import UserError
from trainer.recipe.config import CONFIG_FILE

CONFIG = CONFIG_FILE
BACKUP = outputs.BACKUP
CHECKPOINTS = "checkpoints"
LAST_WEIGHTS = fs.join(CHECKPOINTS, "last.weights.h5")
BEST_MODEL = outputs.BEST_MODEL
HISTORY = outputs.HISTORY
LOGS = "logs"
VAL_PREDICTIONS = "val_predictions.csv"
CURVES = "curves.png"
SERVING_MODEL = "serving.keras"
SUMMARY = outputs.SUMMARY

# The baseline's output dir (trainer.baseline.run writes it; the CV report reads it beside the model's).
BASELINE_SETTINGS = "settings.json"  # not config.json, which marks a run dir for trainer.training.runs
BASELINE_OOF = "oof.csv"
BASELINE_REPORT = "report.json"
BASELINE_SUBMISSION = "submission.csv"

# A pretraining dir (trainer.pretrain.run writes it; trainer.training.train's --init_from reads the encoder). Names
# of its own, so that a runs root holding it is not taken for a run dir (no config.json, no summary.json).
PRETRAIN_CONFIG = "pretrain.json"  # {"train": TrainConfig, "pretrain": PretrainConfig}, resolved
ENCODER = "encoder.keras"  # trunk + projection: log-mel [B, n_mels, frames, 1] -> embedding [B, E]
PRETRAIN_HISTORY = "pretrain_history.csv"
PRETRAIN_SUMMARY = "pretrain_summary.json"  # written last: the pretraining is complete

# What a fresh start (nothing to resume) or --overwrite removes; config.json is rewritten anyway.
TRAINING_OUTPUTS = (SUMMARY, BEST_MODEL, CHECKPOINTS, HISTORY, VAL_PREDICTIONS, CURVES, LOGS, BACKUP,
                    SERVING_MODEL)


def path(run_dir: str, name: str) -> str:
    """run_dir/name, for a local or gs:// run dir."""
    return fs.join(run_dir, name)


def is_complete(run_dir: str) -> bool:
    """True once trainer.training.train has written summary.json (it does so last)."""
    return fs.exists(path(run_dir, SUMMARY))


def has_config(run_dir: str) -> bool:
    return fs.exists(path(run_dir, CONFIG))


def read_history(run_dir: str, monitor: str = "val_rec_lwlrap") -> pd.DataFrame:
    """history.csv as Keras's CSVLogger writes it (empty, with `epoch` and `monitor` columns, if absent).

    An epoch logged twice (a kill between callbacks) keeps its last row.
    """
    history_path = fs.join(run_dir, HISTORY)
    if not fs.exists(history_path):
        return pd.DataFrame({"epoch": [], monitor: []})
    history = fs.read_csv(history_path)
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def load_baseline_report(out_dir: str) -> dict[str, Any] | None:
    """The report.json of a finished baseline run in `out_dir`, or None when there is none (e.g. to show the
    baseline beside a model's CV report)."""
    path = fs.join(str(out_dir), BASELINE_REPORT)
    if not fs.isfile(path):
        return None
    try:
        return fs.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); run `make baseline` again") from e


def file_id(path: str) -> str:
    """The first 16 hex digits of the SHA-256 of the file at `path` (local or gs://): which version of it a run saw."""
    return hashlib.sha256(fs.read_bytes(path)).hexdigest()[:16]


def baseline_fingerprint(out_dir: str) -> dict[str, str | None]:
    """{"oof_sha256", "submission_sha256"}: the first 16 hex digits of the SHA-256 of the baseline's oof.csv and
    submission.csv in `out_dir`, None for a file that is not there.

    The CV report records it beside the blend weight it chose on that oof.csv, and `make predict` blends only the
    submission.csv of that same baseline run (trainer.inference.blending), not one a later `make baseline` wrote.
    """
    def digest(name: str) -> str | None:
        path = fs.join(str(out_dir), name)
        return file_id(path) if fs.isfile(path) else None

    return {"oof_sha256": digest(BASELINE_OOF), "submission_sha256": digest(BASELINE_SUBMISSION)}
