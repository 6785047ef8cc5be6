"""A Keras callback that interrupts fit() after a given epoch, as Ctrl-C would, for the resumption tests.

    net.fit(..., callbacks=[*run_callbacks, InterruptAfter(1)])   # raises KeyboardInterrupt after epoch 1 (0-based)
"""
from __future__ import annotations

import keras


class InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("interrupted")
