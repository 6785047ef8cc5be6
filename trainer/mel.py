"""Log-mel front end in TensorFlow, equal to librosa's, shared by training and inference.

    waveform float32 [..., samples]
      -> centered STFT (zero padding of n_fft/2 each side, periodic Hann)   [..., frames, n_fft/2+1]
      -> power |X|^power                                                     [..., frames, n_fft/2+1]
      -> mel filter bank (librosa.filters.mel, Slaney)                       [..., n_mels, frames]
      -> dB: 10*log10(max(S, amin)) (ref 1.0), clipped at (max - top_db) per example
      -> min-max scaling per example to [0, 1] (a constant input gives zeros, not NaN)

This is ``librosa.feature.melspectrogram`` (librosa 0.11 defaults: center=True, pad_mode="constant",
window="hann") followed by ``librosa.power_to_db(S, ref=1.0, amin, top_db)``; `librosa_log_mel` is
that reference in numpy and tests/test_mel.py checks the two agree. frames = 1 + samples // hop
(`num_frames`): 10 s at 48 kHz gives 128 x 938. There is no image resize: the model takes
[n_mels, frames, 1] as computed.

dB scale and the seed notebook: the seed applied ``librosa.amplitude_to_db`` to a *power*
spectrogram, i.e. 20*log10(S) with amin 1e-5 and top_db 80 on that doubled scale. Min-max scaling
removes the factor 2, so what remains is the clip: the seed kept only 40 dB of power dynamic range
(and floored power at 1e-5). ``MelConfig(top_db=40.0, amin=1e-5)`` reproduces the seed's features
exactly; the default keeps librosa's power_to_db semantics (80 dB of range, amin 1e-10).

Usage::

    from trainer.mel import MelConfig, LogMel, log_mel, num_frames
    cfg = MelConfig()
    features = log_mel(waveforms, cfg)              # [batch, samples] -> [batch, 128, frames]
    layer = LogMel(cfg)                             # [batch, samples] -> [batch, 128, frames, 1]
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf


class MelConfigError(ValueError):
    """A mel front-end parameter is out of range."""


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Parameters of the log-mel front end (defaults: the seed notebook's).

    sample_rate: Hz of the waveform. n_fft: FFT size = window length. hop_length: samples between
    frames. n_mels: mel bands. fmin, fmax: band edges in Hz. power: exponent of the magnitude (2 =
    power). top_db: dynamic range kept below each example's maximum, dB. amin: power floor before
    log10 (librosa.power_to_db's amin).
    """

    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 84.0
    fmax: float = 15056.0
    power: float = 2.0
    top_db: float = 80.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise MelConfigError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise MelConfigError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin} fmax={self.fmax} "
                f"sample_rate={self.sample_rate}"
            )
        for name in ("power", "top_db", "amin"):
            if not getattr(self, name) > 0:
                raise MelConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    """Frames of the centered STFT of `num_samples` samples (librosa's 1 + n // hop)."""
    return 1 + num_samples // cfg.hop_length


@functools.lru_cache(maxsize=16)
def _filter_bank(cfg: MelConfig) -> tuple[np.ndarray, int]:
    """librosa's mel filters restricted to the FFT bins any filter uses.

    Returns (filters float32 [n_mels, bins_used], first_bin): bins outside contribute exactly 0,
    so skipping them changes nothing but the cost (~40 % fewer bins for fmax 15056 Hz at 48 kHz).
    """
    import librosa  # deferred: only needed to build the constant

    filters = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, dtype=np.float32
    )  # [n_mels, n_fft // 2 + 1]
    used = np.flatnonzero(filters.any(axis=0))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    bank = np.ascontiguousarray(filters[:, first:last])
    bank.flags.writeable = False
    return bank, first


def mel_power(waveform: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """Mel power spectrogram: float32 [..., samples] -> float32 [..., n_mels, frames]."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    rank = waveform.shape.rank
    if rank is None:
        raise MelConfigError("mel_power needs a waveform of known rank")
    pad = cfg.n_fft // 2
    padded = tf.pad(waveform, [[0, 0]] * (rank - 1) + [[pad, pad]])  # [..., samples + n_fft]
    spec = tf.signal.stft(
        padded,
        frame_length=cfg.n_fft,
        frame_step=cfg.hop_length,
        fft_length=cfg.n_fft,
        window_fn=functools.partial(tf.signal.hann_window, periodic=True),
        pad_end=False,
    )  # [..., frames, n_fft // 2 + 1] complex64
    bank, first = _filter_bank(cfg)
    spec = spec[..., first : first + bank.shape[1]]  # [..., frames, bins_used]
    if cfg.power == 2.0:
        power = tf.math.square(tf.math.real(spec)) + tf.math.square(tf.math.imag(spec))
    else:
        power = tf.math.pow(tf.math.abs(spec), cfg.power)
    # [n_mels, bins_used] x [..., frames, bins_used]^T, batch dims broadcast -> [..., n_mels, frames]
    return tf.linalg.matmul(tf.constant(bank), power, transpose_b=True)


def power_to_db(power: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """librosa.power_to_db(ref=1.0, amin, top_db) per example: [..., n_mels, frames] -> same shape, dB."""
    db = (10.0 / math.log(10.0)) * tf.math.log(tf.maximum(power, cfg.amin))
    peak = tf.reduce_max(db, axis=[-2, -1], keepdims=True)  # [..., 1, 1]
    return tf.maximum(db, peak - cfg.top_db)


def scale_per_example(x: tf.Tensor) -> tf.Tensor:
    """Min-max scaling of each [n_mels, frames] example to [0, 1]; a constant example becomes 0."""
    low = tf.reduce_min(x, axis=[-2, -1], keepdims=True)
    high = tf.reduce_max(x, axis=[-2, -1], keepdims=True)
    return tf.math.divide_no_nan(x - low, high - low)


def log_mel(waveform: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """Scaled log-mel features: float32 [..., samples] -> float32 [..., n_mels, frames] in [0, 1]."""
    return scale_per_example(power_to_db(mel_power(waveform, cfg), cfg))


@keras.saving.register_keras_serializable(package="rfcx")
class LogMel(keras.layers.Layer):
    """Keras layer: waveforms float32 [batch, samples] -> log-mel images [batch, n_mels, frames, 1].

    Computes in float32 whatever the mixed-precision policy (set dtype to override). Saved with
    the model through get_config; the filter bank is rebuilt from the config when loading.
    """

    def __init__(self, mel_config: MelConfig | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mel_config = mel_config or MelConfig()

    def call(self, waveforms: tf.Tensor) -> tf.Tensor:
        return log_mel(waveforms, self.mel_config)[..., tf.newaxis]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        samples = input_shape[-1]
        frames = None if samples is None else num_frames(samples, self.mel_config)
        return (*input_shape[:-1], self.mel_config.n_mels, frames, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mel_config": dataclasses.asdict(self.mel_config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LogMel":
        config = dict(config)
        return cls(MelConfig(**config.pop("mel_config")), **config)


def librosa_log_mel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """The numpy/librosa reference of `log_mel` for one waveform: float [n] -> float32 [n_mels, frames]."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )
    db = librosa.power_to_db(power, ref=1.0, amin=cfg.amin, top_db=cfg.top_db)
    span = db.max() - db.min()
    return ((db - db.min()) / span if span > 0 else np.zeros_like(db)).astype(np.float32)
