"""The callbacks of a training run (trainer.training.train): what is written after each epoch, and how a
resumed run continues where the interrupted one stopped.

    callbacks = run_callbacks(run_dir, cfg, history, validator)   # validator first, BackupAndRestore last
                                                                   # (AveragedWeights around them with an EMA)
    best = best_row(history, cfg.monitor)                          # the best epoch's row of history.csv
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import pandas as pd

from core import fs
from trainer.model import front_end
from trainer.recipe.config import TrainConfig
from trainer.training import run_layout as layout
from trainer.training import validation
from trainer.training.run_layout import BACKUP, BEST_MODEL, HISTORY, LOGS


def monitor_mode(monitor: str) -> str:
    """"min" for a loss, "max" for the LWLRAPs."""
    return "min" if monitor.endswith("loss") else "max"


def best_row(history: pd.DataFrame, monitor: str) -> pd.Series:
    """The history row of the best epoch by `monitor` (the first of equals, as the checkpoint keeps it)."""
    values = history[monitor]
    return history.loc[values.idxmin() if monitor_mode(monitor) == "min" else values.idxmax()]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience counts the epochs of the interrupted run it resumes.

    `past` holds the monitored value of every epoch finished before the resumption (history.csv
    up to initial_epoch), oldest first. At train begin they are replayed through EarlyStopping's own
    on_epoch_end, so wait, best and best_epoch are what an uninterrupted run would hold.
    """

    def __init__(self, past: Sequence[float] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.past = [float(v) for v in past]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        for epoch, value in enumerate(self.past):
            self.on_epoch_end(epoch, {self.monitor: value})

    def stopped_before(self, net: keras.Model) -> bool:
        """True when the replayed epochs already reach `patience`: the interrupted run had stopped early.

        Keras' fit checks stop_training only after a step, so such a run must not call fit at all.
        """
        self.set_model(net)
        self.on_train_begin()
        stopped = bool(net.stop_training)
        net.stop_training = False
        return stopped


class HistoryLogger(keras.callbacks.CSVLogger):
    """CSVLogger that also closes a gs:// file: Keras' on_train_end asks the file for `.closed`, which
    tf.io.gfile's GFile (what Keras opens for a remote path) lacks, so the run would end in an AttributeError.
    """

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.csv_file is not None:
            self.csv_file.close()
            self.csv_file = None
        self.writer = None


class BestClassifier(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint of the classifier: best.keras takes log-mels whether or not the log-mel is in the
    trained model (trainer.model.front_end.classifier_of)."""

    def set_model(self, model: keras.Model) -> None:
        super().set_model(front_end.classifier_of(model))


class LastWeights(keras.callbacks.Callback):
    """Writes the classifier's weights (no optimizer state: BackupAndRestore keeps that) after every epoch.

    Load them into the run's architecture: `net = model.build_model(cfg, shape, ...); net.load_weights(path)`.
    With the log-mel in the model, the classifier is the part behind it (trainer.model.front_end.classifier_of).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # objects_to_skip: keras.saving.save_weights' way to leave out a part of the model's state.
        classifier = front_end.classifier_of(self.model)
        keras.saving.save_weights(classifier, self.path, overwrite=True, objects_to_skip=[self.model.optimizer])


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Puts the optimizer's averaged weights (cfg.ema_momentum) into the model at each epoch's end, for the
    callbacks between it and its `swap_back()`: validation, the checkpoints.

    Keras' SwapEMAWeights(swap_on_epoch=True) swaps back only at the next epoch's begin, after
    BackupAndRestore has saved the averaged weights as the model's and the raw ones as the average, so a
    resumed run would train on from the average. `swap_back()` is a callback to place before the backup.
    """

    def __init__(self) -> None:
        super().__init__(swap_on_epoch=True)

    def swap_back(self) -> keras.callbacks.Callback:
        """A callback whose epoch end returns the raw weights to the model (SwapEMAWeights' epoch-begin swap)."""
        return SwapBack(self)


class SwapBack(keras.callbacks.Callback):
    """At each epoch's end, AveragedWeights' own swap back to the raw weights (see AveragedWeights.swap_back)."""

    def __init__(self, averaged: AveragedWeights) -> None:
        super().__init__()
        self.averaged = averaged

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.averaged.on_epoch_begin(epoch, logs)  # swaps only while the average is in the model


def run_callbacks(run_dir: str, cfg: TrainConfig, history: pd.DataFrame,
               validator: validation.RecordingValidation) -> list[keras.callbacks.Callback]:
    """The run's callbacks; `history` = the epochs finished before this invocation (empty unless resuming)."""
    fs.makedirs(layout.path(run_dir, layout.CHECKPOINTS))
    mode = monitor_mode(cfg.monitor)
    best_so_far = None if history.empty else best_row(history, cfg.monitor)[cfg.monitor]
    callbacks = [
        validator,  # first (with an EMA, after AveragedWeights): it puts val_loss, val_lwlrap and val_rec_lwlrap
                    # into the logs the others read
        # Before BackupAndRestore: a kill between the two then duplicates a history row (dropped on
        # reading) rather than losing one.
        HistoryLogger(layout.path(run_dir, HISTORY), append=True),
        # A resumed run must beat the best epoch of before the interruption to replace best.keras.
        BestClassifier(layout.path(run_dir, BEST_MODEL), monitor=cfg.monitor, mode=mode,
                                        save_best_only=True,
                                        initial_value_threshold=None if pd.isna(best_so_far) else float(best_so_far),
                                        verbose=min(cfg.verbose, 1)),
        LastWeights(layout.path(run_dir, layout.LAST_WEIGHTS)),
        keras.callbacks.TensorBoard(layout.path(run_dir, LOGS)),
    ]
    if cfg.patience:
        callbacks.append(ResumableEarlyStopping(list(history[cfg.monitor]), monitor=cfg.monitor, mode=mode,
                                                patience=cfg.patience, verbose=min(cfg.verbose, 1)))
    if cfg.ema_momentum:  # validated and checkpointed: the averaged weights; backed up: the raw ones
        averaged = AveragedWeights()
        callbacks = [averaged, *callbacks, averaged.swap_back()]
    # Kept after fit (deleted by us just before summary.json), so a kill after the last epoch
    # resumes into zero epochs and only redoes the predictions. It saves the weights and the optimizer
    # state, which resuming needs, and (double_checkpoint) the previous epoch's, for a kill while writing.
    callbacks.append(keras.callbacks.BackupAndRestore(layout.path(run_dir, BACKUP), delete_checkpoint=False,
                                                      double_checkpoint=True))
    return callbacks
