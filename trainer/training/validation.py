"""Validation the way the competition scores: slices of the held-out fold, then max per recording.

After every epoch `RecordingValidation` scores every validation slice (tp, fp and background, a
window centred on each) and adds to the epoch's logs, before the checkpoint, early-stopping and CSV
callbacks read them:

* `val_loss`: the training loss (masked BCE on the known labels) over the validation slices;
* `val_lwlrap`: LWLRAP over slices (rows without a positive left out, as LWLRAP does);
* `val_rec_lwlrap`: each validation recording scored per species by the max over its slices, against
  the species with a tp box in it: the RFCX metric on what the shards hold. The default `--monitor`.

Each epoch makes one pass over the validation batches (trainer.data.inputs.eval_dataset): one
`model.predict` over their features, while the metadata and targets that travel with each batch
are collected as the batches go by, so every score row belongs to the slice it sits next to.
With the log-mel in the model (`--mel.device model`) the batches hold waveforms and the classifier
scores them behind a LogMel layer (trainer.model.front_end.scoring_model), so validation computes
its log-mels on the accelerator too, without the training-time augmentation.

    callback = RecordingValidation(fold_inputs.val_files, cfg, batch_size=32, num_examples=n)
    net.fit(train, epochs=..., callbacks=[callback, checkpoint, ...])   # first, so the others see its logs
    meta, scores = callback.predict()                                    # or after fit, with the best weights
    table = prediction_table(meta, scores, cfg.num_classes)              # val_predictions.csv
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import keras
import numpy as np
import pandas as pd

from trainer.data import inputs
from trainer.evaluation import columns
from trainer.evaluation.lwlrap import LwlrapError, lwlrap, recording_lwlrap
from trainer.model import front_end
from trainer.model.losses import masked_bce
from trainer.recipe.config import TrainConfig


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
    """Adds val_loss, val_lwlrap and val_rec_lwlrap to every epoch's logs (see the module docstring).

    `meta` holds the columns of the latest pass (recording_id, kind, ..., offset, y [N, 2C]).
    """

    def __init__(self, files: Sequence[str], cfg: TrainConfig, batch_size: int, num_examples: int) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.cfg = cfg
        self.on_model = inputs.mel_on_model(cfg)
        self.batches = inputs.eval_dataset(files, cfg, batch_size, num_examples)
        self.scorer: keras.Model | None = None
        self.steps = math.ceil(num_examples / batch_size)  # batches per pass, the last one partial
        self.meta: dict[str, np.ndarray] = {}

    def set_model(self, model: keras.Model) -> None:
        """The model to score with: a classifier (log-mel in) or build_training_model's model."""
        super().set_model(model)
        classifier = front_end.classifier_of(model)
        self.scorer = front_end.scoring_model(self.cfg, classifier) if self.on_model else classifier

    def predict(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(metadata columns, scores float64 [N, C]) of one pass over the validation slices, row for row."""
        collected: dict[str, list[np.ndarray]] = {k: [] for k in inputs.META_KEYS + ("offset", "y")}

        def features() -> Iterator[tuple[np.ndarray]]:  # each batch's metadata is kept as its features go to predict
            for batch in self.batches.as_numpy_iterator():
                for key, values in collected.items():
                    values.append(batch[key])
                yield (batch["waveform"] if self.on_model else batch["x"],)  # [B, window] or [B, n_mels, frames, 1]

        scores = np.asarray(self.scorer.predict(features(), steps=self.steps, verbose=0), np.float64)  # [N, C]
        meta = {k: np.concatenate(v) for k, v in collected.items()}
        for key in ("recording_id", "kind"):
            meta[key] = np.array([r.decode() for r in meta[key]], dtype=object)
        if scores.shape[0] != meta["y"].shape[0]:
            raise RuntimeError(f"{scores.shape[0]} scores for {meta['y'].shape[0]} validation slices")
        self.meta = meta
        return meta, scores

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        meta, scores = self.predict()
        if logs is not None:
            logs.update(metrics(meta["recording_id"], meta["y"], scores, self.num_classes))


def prediction_table(meta: dict[str, np.ndarray], scores: np.ndarray, num_classes: int) -> pd.DataFrame:
    """val_predictions.csv: one row per slice: META_KEYS, offset, y* (labels), w* (loss weights), s* (scores)."""
    table = pd.DataFrame({k: meta[k] for k in inputs.META_KEYS + ("offset",)})
    y = meta["y"]
    parts = [table,
             pd.DataFrame(y[:, :num_classes].astype(np.int64), columns=columns.label_columns(num_classes)),
             pd.DataFrame(y[:, num_classes:], columns=columns.weight_columns(num_classes)),
             pd.DataFrame(np.asarray(scores, np.float64), columns=columns.score_columns(num_classes))]
    return pd.concat(parts, axis=1)
