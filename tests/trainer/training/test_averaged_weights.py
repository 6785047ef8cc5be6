"""Weight averaging (--ema_momentum): what the epoch-end callbacks see, and what a resumed run trains on.

A Dense model on fixed data with the project's optimizer (trainer.model.network.make_optimizer) and the
callbacks' order of trainer.training.callbacks.run_callbacks: AveragedWeights, the callbacks that validate
and checkpoint, its swap_back(), BackupAndRestore.
"""
from __future__ import annotations

import os

import keras
import numpy as np
import pandas as pd
import pytest

from tests.helpers.interrupt import InterruptAfter
from tests.helpers.recipe_config import small_config
from trainer.model import network
from trainer.training import callbacks as callbacks_lib

MOMENTUM = 0.6
EPOCHS = 4
STEPS = 2  # 4 examples, batches of 2


class Weights(keras.callbacks.Callback):
    """The model's kernel after every step (the raw weights) and at every epoch's end (what a checkpoint sees)."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self.model.layers[0].kernel.numpy().copy())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.layers[0].kernel.numpy().copy())


def _fit(backup_dir: str, extra: list) -> Weights:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")
    cfg = small_config(ema_momentum=MOMENTUM, learning_rate=0.1, lr_schedule="constant", optimizer="adam")
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    net.compile(optimizer=network.make_optimizer(cfg, STEPS), loss="mse")
    averaged, seen = callbacks_lib.AveragedWeights(), Weights()
    callbacks = [averaged, seen, averaged.swap_back(),
                 keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False), *extra]
    net.fit(x, y, batch_size=2, epochs=EPOCHS, shuffle=False, callbacks=callbacks, verbose=0)
    return seen


def test_epoch_end_callbacks_see_the_moving_average_of_the_steps_weights(tmp_path):
    seen = _fit(str(tmp_path / "backup"), [])
    assert len(seen.steps) == EPOCHS * STEPS and len(seen.epochs) == EPOCHS
    average = seen.steps[0]  # Keras' average starts at the first step's weights
    for step, weights in enumerate(seen.steps[1:], start=2):
        average = MOMENTUM * average + (1 - MOMENTUM) * weights
        if step % STEPS == 0:
            np.testing.assert_allclose(seen.epochs[step // STEPS - 1], average, rtol=1e-5, atol=1e-6)
    # Not the raw weights: the average lags behind them.
    assert not np.allclose(seen.epochs[1], seen.steps[2 * STEPS - 1], atol=1e-4)


def test_a_resumed_run_trains_on_from_the_raw_weights_as_an_uninterrupted_one(tmp_path):
    whole = _fit(str(tmp_path / "whole"), [])
    with pytest.raises(KeyboardInterrupt):
        _fit(str(tmp_path / "resumed"), [InterruptAfter(1)])
    assert os.path.exists(tmp_path / "resumed" / "training_metadata.json")
    resumed = _fit(str(tmp_path / "resumed"), [])  # BackupAndRestore: epochs 2 and 3 only
    assert len(resumed.epochs) == EPOCHS - 2
    # Had the backup held the averaged weights as the model's, the resumed steps would start from them.
    for after, before in zip(resumed.steps, whole.steps[2 * STEPS:]):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    for after, before in zip(resumed.epochs, whole.epochs[2:]):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_the_run_callbacks_validate_and_checkpoint_between_the_swaps(tmp_path):
    cfg = small_config(ema_momentum=0.99)
    callbacks = callbacks_lib.run_callbacks(str(tmp_path), cfg, pd.DataFrame(columns=["epoch", cfg.monitor]),
                                            validator=keras.callbacks.Callback())
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds[0] == "AveragedWeights" and kinds[-2:] == ["SwapBack", "BackupAndRestore"]
    assert "BestClassifier" in kinds and "LastWeights" in kinds
    assert "AveragedWeights" not in [type(c).__name__ for c in callbacks_lib.run_callbacks(
        str(tmp_path), small_config(ema_momentum=0.0), pd.DataFrame(columns=["epoch", cfg.monitor]),
        validator=keras.callbacks.Callback())]


def test_the_optimizer_averages_only_when_asked():
    assert network.make_optimizer(small_config(ema_momentum=0.9), STEPS).ema_momentum == 0.9
    assert network.make_optimizer(small_config(ema_momentum=0.9), STEPS).use_ema
    assert not network.make_optimizer(small_config(ema_momentum=0.0), STEPS).use_ema
