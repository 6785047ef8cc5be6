"""What the detection job should output, computed without it: soundfile decodes, librosa resamples,
core.windows cuts and the SavedModel's "windows" signature scores (loaded here with TensorFlow)."""
from __future__ import annotations

import functools

import librosa
import numpy as np
import soundfile as sf

from core import export_layout, windows


@functools.lru_cache(maxsize=4)
def _signature(export_dir: str):
    import tensorflow as tf

    loaded = tf.saved_model.load(export_layout.path(export_dir, export_layout.SAVED_MODEL))
    _signature.keep = loaded
    return loaded.signatures[export_layout.WINDOWS_SIGNATURE]


def resampled(path: str, sample_rate: int, channel: int | None = None) -> np.ndarray:
    y, sr = sf.read(path, dtype="float64", always_2d=True)  # [n, channels]
    mono = y.mean(axis=1) if channel is None else y[:, channel]
    if sr != sample_rate:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq", fix=False)
    return mono.astype(np.float32)


def window_scores(export_dir: str, path: str, stride: int | None = None, channel: int | None = None):
    """(starts in samples [W], scores [W, C], embeddings [W, D]) of the recording at `path`."""
    import tensorflow as tf

    meta = export_layout.read_metadata(export_dir)
    stride = stride or meta.stride_samples
    y = resampled(path, meta.sample_rate, channel)
    cut = windows.cut_windows(y, meta.window_samples, stride)
    out = _signature(export_dir)(waveform=tf.constant(cut))
    return (windows.window_starts(len(y), meta.window_samples, stride), out["scores"].numpy(),
            out["embeddings"].numpy())
