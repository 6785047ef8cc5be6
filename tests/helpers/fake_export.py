"""A tiny exported model obeying core.export_layout's contract, built in seconds (tf.saved_model.save of a
tf.Module), for the detection job's tests; the real exporter (`make export`) is tested on its own side.

    meta = write_fake_export(export_dir, sample_rate=8000, window_samples=4000, stride_samples=2000)
    # EXPORT/saved_model ("windows" and "serving_default" signatures) + EXPORT/metadata.json

The model: the window's magnitude spectrum summed into NUM_BANDS equal bands, log-compressed and
centred over the bands (features [B, NUM_BANDS]); scores = sigmoid(features @ P + b) with a fixed random P (seeded), so a tone
raises the score of the species whose weights favour its band; embeddings = features @ Q.
"""
from __future__ import annotations

import os

import numpy as np

from core import export_layout

NUM_BANDS = 8


def _weights(num_classes: int, embedding_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.5, (NUM_BANDS, num_classes)).astype(np.float32)
    q = rng.normal(0, 1.0, (NUM_BANDS, embedding_size)).astype(np.float32)
    b = np.zeros(num_classes, np.float32)
    return p, q, b


def build_module(window: int, stride: int, num_classes: int, embedding_size: int, seed: int = 0):
    import tensorflow as tf

    p, q, b = _weights(num_classes, embedding_size, seed)
    bins = window // 2 + 1
    band_of_bin = np.minimum(np.arange(bins) * NUM_BANDS // bins, NUM_BANDS - 1)
    pool = np.eye(NUM_BANDS, dtype=np.float32)[band_of_bin]  # [bins, NUM_BANDS]

    class FakeDetector(tf.Module):
        def __init__(self):
            super().__init__()
            self.p, self.q, self.b = tf.Variable(p), tf.Variable(q), tf.Variable(b)
            self.pool = tf.constant(pool)

        def _score(self, x):  # x [B, window]
            spectrum = tf.abs(tf.signal.rfft(x)) / window  # [B, bins]
            log_bands = tf.math.log(1e-4 + tf.matmul(spectrum, self.pool))  # [B, NUM_BANDS]
            # Centred over the bands: the spectrum's shape, not the loudness, decides.
            features = log_bands - tf.reduce_mean(log_bands, axis=1, keepdims=True)
            return tf.sigmoid(tf.matmul(features, self.p) + self.b), tf.matmul(features, self.q)

        @tf.function(input_signature=[tf.TensorSpec([None, window], tf.float32, name=export_layout.INPUT)])
        def windows(self, waveform):
            scores, embeddings = self._score(waveform)
            return {export_layout.SCORES: scores, export_layout.EMBEDDINGS: embeddings}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=export_layout.INPUT)])
        def recording(self, waveform):
            n = tf.shape(waveform, out_type=tf.int64)[0]
            padded = tf.pad(waveform, [[0, tf.maximum(0, window - tf.cast(n, tf.int32))]])
            last = tf.maximum(tf.constant(0, tf.int64), n - window)
            starts = tf.range(0, last + 1, stride, dtype=tf.int64)
            starts = tf.cond(starts[-1] != last, lambda: tf.concat([starts, [last]], 0), lambda: starts)
            frames = tf.gather(padded, starts[:, None] + tf.range(window, dtype=tf.int64)[None, :])  # [W, window]
            scores, embeddings = self._score(frames)
            return {export_layout.SCORES: scores, export_layout.EMBEDDINGS: embeddings, export_layout.STARTS: starts}

    return FakeDetector()


def write_fake_export(export_dir: str, sample_rate: int = 8000, window_samples: int = 4000,
                      stride_samples: int = 2000, num_classes: int = 3, embedding_size: int = 5,
                      seed: int = 0) -> export_layout.ExportMetadata:
    """EXPORT/saved_model and EXPORT/metadata.json (species "s0".."s{C-1}"); returns the metadata."""
    import tensorflow as tf

    module = build_module(window_samples, stride_samples, num_classes, embedding_size, seed)
    os.makedirs(export_dir, exist_ok=True)
    tf.saved_model.save(module, os.path.join(export_dir, export_layout.SAVED_MODEL), signatures={
        export_layout.RECORDING_SIGNATURE: module.recording.get_concrete_function(),
        export_layout.WINDOWS_SIGNATURE: module.windows.get_concrete_function()})
    meta = export_layout.ExportMetadata(species=tuple(f"s{k}" for k in range(num_classes)), sample_rate=sample_rate,
                                        window_samples=window_samples, stride_samples=stride_samples,
                                        embedding_size=embedding_size, preset="fake")
    export_layout.write_metadata(export_dir, meta)
    return meta
