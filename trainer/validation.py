"""Validation the way the competition scores: slices of the held-out fold, then max per recording.

After every epoch `RecordingValidation` scores every validation slice (tp, fp and background, a
window centred on each) and adds to the epoch's logs, before the checkpoint, early-stopping and CSV
callbacks read them:

* `val_loss`: the training loss (masked BCE on the known labels) over the validation slices;
* `val_lwlrap`: LWLRAP over slices (rows without a positive left out, as LWLRAP does);
* `val_rec_lwlrap`: each validation recording scored per species by the max over its slices, against
  the species with a tp box in it: the RFCX metric on what the shards hold. The default `--monitor`.

The slices' metadata and targets are read once; each epoch runs one `model.predict` over the features.

    callback = RecordingValidation(fold_inputs.val_files, cfg, batch_size=32, num_examples=n)
    net.fit(train, epochs=..., callbacks=[callback, checkpoint, ...])   # first, so the others see its logs
    table = prediction_table(callback.meta, scores, cfg.num_classes)     # val_predictions.csv
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import pandas as pd

from trainer import inputs
from trainer.config import TrainConfig
from trainer.losses import masked_bce
from trainer.lwlrap import LwlrapError, lwlrap, recording_lwlrap

LABEL_PREFIX, WEIGHT_PREFIX, SCORE_PREFIX = "y", "w", "s"


def label_columns(num_classes: int, prefix: str = LABEL_PREFIX) -> list[str]:
    return [f"{prefix}{c}" for c in range(num_classes)]


def _safe(metric: Any, *args: Any) -> float:
    """A LWLRAP value, or NaN when the rows hold no positive (a fold of background slices only)."""
    try:
        return float(metric(*args))
    except LwlrapError:
        return float("nan")


def metrics(recording_ids: np.ndarray, y: np.ndarray, scores: np.ndarray, num_classes: int) -> dict[str, float]:
    """val_loss, val_lwlrap (slices) and val_rec_lwlrap (recordings) of scores [N, C] against y [N, 2C]."""
    labels = y[:, :num_classes]
    return {"val_loss": masked_bce(y, scores, num_classes),
            "val_lwlrap": _safe(lwlrap, labels, scores),
            "val_rec_lwlrap": _safe(recording_lwlrap, recording_ids, labels, scores)}


class RecordingValidation(keras.callbacks.Callback):
    """Adds val_loss, val_lwlrap and val_rec_lwlrap to every epoch's logs (see the module docstring)."""

    def __init__(self, files: Sequence[str], cfg: TrainConfig, batch_size: int, num_examples: int) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.meta = inputs.eval_metadata(files, cfg)  # recording_id, kind, ..., y [N, 2C]
        self.features = inputs.eval_dataset(files, cfg, batch_size, num_examples).map(lambda x, y: x)
        self.last_scores: np.ndarray | None = None

    def score(self) -> np.ndarray:
        scores = np.asarray(self.model.predict(self.features, verbose=0), np.float64)  # [N, C]
        if scores.shape[0] != self.meta["y"].shape[0]:  # both read the files in the same fixed order
            raise RuntimeError(f"{scores.shape[0]} scores for {self.meta['y'].shape[0]} validation slices")
        return scores

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.last_scores = self.score()
        if logs is not None:
            logs.update(metrics(self.meta["recording_id"], self.meta["y"], self.last_scores, self.num_classes))


def prediction_table(meta: dict[str, np.ndarray], scores: np.ndarray, num_classes: int) -> pd.DataFrame:
    """val_predictions.csv: one row per slice: META_KEYS, offset, y* (labels), w* (loss weights), s* (scores)."""
    table = pd.DataFrame({k: meta[k] for k in inputs.META_KEYS + ("offset",)})
    y = meta["y"]
    parts = [table,
             pd.DataFrame(y[:, :num_classes].astype(np.int64), columns=label_columns(num_classes)),
             pd.DataFrame(y[:, num_classes:], columns=label_columns(num_classes, WEIGHT_PREFIX)),
             pd.DataFrame(np.asarray(scores, np.float64), columns=label_columns(num_classes, SCORE_PREFIX))]
    return pd.concat(parts, axis=1)
