"""Log-mel front end in TensorFlow, equal to librosa's, shared by training and inference.

    waveform float32 [..., samples]
      -> centered STFT (zero padding of n_fft/2 each side, periodic Hann)   [..., frames, n_fft/2+1]
      -> power |X|^power                                                     [..., frames, n_fft/2+1]
      -> mel filter bank (librosa.filters.mel, Slaney)                       [..., n_mels, frames]
      -> dB: 10*log10(max(S, amin)) (ref 1.0), clipped at (max - top_db) per example
      -> scaling (`scaling`): "minmax" (the seed's) = min-max per example to [0, 1] (a constant input
         gives zeros, not NaN); "db" = (dB - db_offset) / db_scale, the same affine map for every
         example, so a quiet window stays quiet instead of being stretched to the full range
    or, with scaling "pcen", instead of the dB step:
      -> per-channel energy normalisation (`pcen`, librosa.pcen): each band divided by its own smoothed
         past (an automatic gain control with time constant pcen_time_constant), then root-compressed;
         stationary noise (rain hiss, an engine's drone) flattens, onsets stand out  [..., n_mels, frames]

Pitch shift at the mel stage (training augmentation, trainer.augment.pitch_warp): each example
picks its own warped filter bank by index (`pitch_steps`), so the shift costs a gather instead of a
waveform pitch shifter. `pitch_steps=None` (the default, and what inference uses) is the plain
bank: exactly the computation without augmentation. trainer.augment.chain draws the steps.

This is ``librosa.feature.melspectrogram`` (librosa 0.11 defaults: center=True, pad_mode="constant",
window="hann") followed by ``librosa.power_to_db(S, ref=1.0, amin, top_db)``; `librosa_log_mel` is
that reference in numpy and tests/trainer/features/test_mel.py checks the two agree. frames = 1 + samples // hop
(`num_frames`): 10 s at 48 kHz gives 128 x 938. There is no image resize: the model takes
[n_mels, frames, 1] as computed.

dB scale and the seed notebook: the seed applied ``librosa.amplitude_to_db`` to a *power*
spectrogram, i.e. 20*log10(S) with amin 1e-5 and top_db 80 on that doubled scale. Min-max scaling
removes the factor 2, so what remains is the clip: the seed kept only 40 dB of power dynamic range
(and floored power at 1e-5). ``MelConfig(top_db=40.0, amin=1e-5)`` reproduces the seed's features
exactly; the default keeps librosa's power_to_db semantics (80 dB of range, amin 1e-10).

Usage::

    from trainer.features.mel import MelConfig, LogMel, log_mel, num_frames
    cfg = MelConfig()
    features = log_mel(waveforms, cfg)              # [batch, samples] -> [batch, 128, frames]
    shifted = log_mel(waveforms, cfg, pitch_steps=steps, max_pitch_steps=5)   # steps int32 [batch]
    layer = LogMel(cfg)                             # [batch, samples] -> [batch, 128, frames, 1]
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf

from core import choices
from core.errors import UserError
from trainer.augment import pitch_warp
from trainer.features import placement


class MelConfigError(UserError, ValueError):
    """A mel front-end parameter is out of range (a user's setting: one `error:` line at the entry points)."""


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Parameters of the log-mel front end (defaults: the seed notebook's).

    sample_rate: Hz of the waveform. n_fft: FFT size = window length. hop_length: samples between
    frames. n_mels: mel bands. fmin, fmax: band edges in Hz. power: exponent of the magnitude (2 =
    power). top_db: dynamic range kept below each example's maximum, dB. amin: power floor before
    log10 (librosa.power_to_db's amin).
    """

    # Bounds whose absurd values would fail deep inside TensorFlow (core.settings applies them to flags/files).
    LIMITS: ClassVar[dict[str, tuple[float | None, float]]] = {
        "sample_rate": (None, 768000), "n_fft": (None, 65536), "hop_length": (None, 65536), "n_mels": (None, 4096),
        "top_db": (None, 1000)}

    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 84.0
    fmax: float = 15056.0
    power: float = 2.0
    top_db: float = 80.0
    amin: float = 1e-10
    scaling: Literal["minmax", "db", "pcen"] = "minmax"
    db_offset: float = -60.0  # "db" scaling: roughly the middle of field recordings' dB (float audio, ref 1)
    db_scale: float = 20.0
    # "pcen" scaling (librosa.pcen's parameters and defaults; Lostanlen et al. 2019, "Per-channel energy
    # normalization: why and how"): smoother time constant in seconds, gain (alpha), bias (delta), root
    # (r), eps. pcen_input_scale multiplies the waveform first: librosa's documentation scales float audio
    # in [-1, 1] by 2**31 (the int32 range PCEN's constants were chosen for), else eps dominates quiet bands.
    pcen_time_constant: float = 0.4
    pcen_gain: float = 0.98
    pcen_bias: float = 2.0
    pcen_power: float = 0.5
    pcen_eps: float = 1e-6
    pcen_input_scale: float = 2.0**31
    # Training only: where the log-mel is computed, in the input pipeline ("host") or in the model
    # ("model"), "auto" = the model when there is a GPU/TPU (trainer.features.placement). Not part
    # of the features: LogMel and the exported model drop it (`features_only`).
    device: placement.MelDevice = "auto"

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
        if self.n_mels > self.n_fft // 2 + 1:  # a band needs an FFT bin; more bands are empty filters
            raise MelConfigError(f"n_mels={self.n_mels} exceeds the {self.n_fft // 2 + 1} FFT bins of "
                                 f"n_fft={self.n_fft}")
        choices.check(self, MelConfigError)
        if not 0.0 <= self.pcen_gain <= 1.0:
            raise MelConfigError(f"pcen_gain must be in [0, 1], got {self.pcen_gain!r}")
        for name in ("power", "top_db", "amin", "db_scale", "pcen_time_constant", "pcen_bias", "pcen_power",
                     "pcen_eps", "pcen_input_scale"):
            if not getattr(self, name) > 0:
                raise MelConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")


def features_only(cfg: MelConfig) -> MelConfig:
    """`cfg` without the training placement (device "auto"): equal for equal features."""
    return dataclasses.replace(cfg, device=placement.AUTO) if cfg.device != placement.AUTO else cfg


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    """Frames of the centered STFT of `num_samples` samples (librosa's 1 + n // hop)."""
    return 1 + num_samples // cfg.hop_length


def _librosa_filters(cfg: MelConfig) -> np.ndarray:
    """librosa.filters.mel (Slaney) of `cfg`: float32 [n_mels, n_fft // 2 + 1]."""
    import librosa  # deferred: only needed to build the constants

    return librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, dtype=np.float32
    )


def _used_bins(banks: np.ndarray) -> tuple[np.ndarray, int]:
    """(banks[..., first:last] read-only, first) for the smallest bin range holding every non-zero weight.

    Bins outside contribute exactly 0, so skipping them changes nothing but the cost (fewer
    bins for fmax 15056 Hz at 48 kHz).
    """
    used = np.flatnonzero(banks.reshape(-1, banks.shape[-1]).any(axis=0))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    out = np.ascontiguousarray(banks[..., first:last])
    out.flags.writeable = False
    return out, first


@functools.lru_cache(maxsize=16)
def _filter_bank(cfg: MelConfig) -> tuple[np.ndarray, int]:
    """librosa's mel filters on the bins they use: (float32 [n_mels, bins_used], first_bin)."""
    return _used_bins(_librosa_filters(cfg))


@functools.lru_cache(maxsize=16)
def pitch_filter_banks(cfg: MelConfig, max_steps: int) -> tuple[np.ndarray, int]:
    """Mel banks of pitch shifts by -max_steps .. +max_steps semitones, restricted to the bins used.

    Returns (banks float32 [2 * max_steps + 1, n_mels, bins_used], first_bin); banks[n + max_steps]
    = M @ pitch_warp.spectrum_warp(2^(n/12)). The bins used reach fmax * 2^(max_steps/12) (down shifts read
    from above fmax): 20.1 kHz for the defaults, below the 24 kHz Nyquist. When that passes
    Nyquist there is nothing to read there, and a down shift leaves the top bands empty, exactly as
    a waveform pitch shift of audio band-limited at Nyquist does; so such configs are allowed.
    """
    try:
        banks = pitch_warp.warped_banks(_librosa_filters(cfg), max_steps)  # [S, n_mels, F]
    except ValueError as e:
        raise MelConfigError(str(e)) from e
    return _used_bins(banks)


def mel_power(waveform: tf.Tensor, cfg: MelConfig, pitch_steps: tf.Tensor | None = None,
              max_pitch_steps: int = 0) -> tf.Tensor:
    """Mel power spectrogram: float32 [..., samples] -> float32 [..., n_mels, frames].

    pitch_steps: None (no shift) or int [...] semitones in [-max_pitch_steps, max_pitch_steps],
    one per waveform: the mel of each waveform pitch-shifted by its steps (see the module doc).
    """
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
    if pitch_steps is None:
        bank, first = _filter_bank(cfg)
        bank = tf.constant(bank)  # [n_mels, bins_used]
    else:
        banks, first = pitch_filter_banks(cfg, max_pitch_steps)
        index = tf.cast(pitch_steps, tf.int32) + max_pitch_steps
        # Out-of-range steps fail loudly (tf.gather's index check on CPU) rather than clamping.
        bank = tf.gather(tf.constant(banks), index)  # [..., n_mels, bins_used]
    if cfg.power == 2.0:
        power = tf.math.square(tf.math.real(spec)) + tf.math.square(tf.math.imag(spec))
    else:
        power = tf.math.pow(tf.math.abs(spec), cfg.power)
    # Sliced after the complex -> real step: TFLite's builtins cannot slice a complex tensor, and this
    # order keeps the exported TFLite model (trainer.inference.tflite_export) free of Flex ops.
    power = power[..., first : first + bank.shape[-1]]  # [..., frames, bins_used]
    # [(...,) n_mels, bins_used] x [..., frames, bins_used]^T, batch dims broadcast -> [..., n_mels, frames]
    return tf.linalg.matmul(bank, power, transpose_b=True)


def power_to_db(power: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """librosa.power_to_db(ref=1.0, amin, top_db) per example: [..., n_mels, frames] -> same shape, dB."""
    db = (10.0 / math.log(10.0)) * tf.math.log(tf.maximum(power, cfg.amin))
    peak = tf.reduce_max(db, axis=[-2, -1], keepdims=True)  # [..., 1, 1]
    return tf.maximum(db, peak - cfg.top_db)


def pcen_smoothing_coefficient(cfg: MelConfig) -> float:
    """librosa.pcen's b: the one-pole smoother's weight of the current frame, from the time constant in frames."""
    t_frames = cfg.pcen_time_constant * cfg.sample_rate / cfg.hop_length
    return (math.sqrt(1.0 + 4.0 * t_frames**2) - 1.0) / (2.0 * t_frames**2)


def pcen_smoother(frames: tf.Tensor, b: float) -> tf.Tensor:
    """[frames, frames] matrix K with M = E @ K the one-pole smoother M_t = b E_t + (1 - b) M_(t-1), started at
    steady state on the first frame (M_0 = E_0: scipy's lfilter_zi scaled by E_0; librosa.pcen's default zi is
    unscaled, the rest state of a unit input, which makes every window's first ~time-constant an onset):
    K[k, t] = w_k (1 - b)^(t - k) for k <= t, with w_k = b, except w_0 = 1 (the first frame's own share b plus the
    initial state's (1 - b), which is E_0 too).

    A matmul instead of a recurrence: one op of O(frames^2) that XLA, GPUs and TFLite all take, for any frames."""
    steps = tf.range(frames, dtype=tf.float32)
    lag = steps[tf.newaxis, :] - steps[:, tf.newaxis]  # [k, t] = t - k
    weight = tf.where(steps == 0.0, 1.0, b)[:, tf.newaxis]  # [frames, 1]: w_k
    return tf.where(lag >= 0.0, weight * tf.pow(1.0 - b, tf.maximum(lag, 0.0)), 0.0)


def pcen(power: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """librosa.pcen(S * pcen_input_scale**power, sr, hop_length, gain, bias, power, time_constant, eps) per
    example: mel power [..., n_mels, frames] -> PCEN [..., n_mels, frames], written in librosa's log-domain form
    (smooth^-gain as exp(-gain (log eps + log1p(M / eps))), the root as expm1(r log1p(.))) so float32 neither
    overflows nor cancels."""
    energy = power * (cfg.pcen_input_scale ** cfg.power)  # the waveform scaled by pcen_input_scale
    frames = tf.shape(energy)[-1]
    smooth = tf.linalg.matmul(energy, pcen_smoother(frames, pcen_smoothing_coefficient(cfg)))  # [..., n_mels, frames]
    inverse_gain = tf.exp(-cfg.pcen_gain * (math.log(cfg.pcen_eps) + tf.math.log1p(smooth / cfg.pcen_eps)))
    bias, root = cfg.pcen_bias, cfg.pcen_power
    return (bias**root) * tf.math.expm1(root * tf.math.log1p(energy * inverse_gain / bias))


def scale_per_example(x: tf.Tensor) -> tf.Tensor:
    """Min-max scaling of each [n_mels, frames] example to [0, 1]; a constant example becomes 0."""
    low = tf.reduce_min(x, axis=[-2, -1], keepdims=True)
    high = tf.reduce_max(x, axis=[-2, -1], keepdims=True)
    return tf.math.divide_no_nan(x - low, high - low)


def scale(db: tf.Tensor, cfg: MelConfig) -> tf.Tensor:
    """dB [..., n_mels, frames] -> model input of the configured `scaling` (same shape)."""
    if cfg.scaling == "minmax":
        return scale_per_example(db)
    return (db - cfg.db_offset) / cfg.db_scale


def log_mel(waveform: tf.Tensor, cfg: MelConfig, pitch_steps: tf.Tensor | None = None,
            max_pitch_steps: int = 0) -> tf.Tensor:
    """Scaled log-mel features: float32 [..., samples] -> float32 [..., n_mels, frames].

    In [0, 1] with scaling "minmax"; (dB - db_offset) / db_scale with "db"; PCEN (>= 0) with "pcen".
    pitch_steps (training augmentation only): see `mel_power`; None = no shift (inference).
    """
    power = mel_power(waveform, cfg, pitch_steps, max_pitch_steps)
    if cfg.scaling == "pcen":
        return pcen(power, cfg)
    return scale(power_to_db(power, cfg), cfg)


@keras.saving.register_keras_serializable(package="rfcx")
class LogMel(keras.layers.Layer):
    """Keras layer: waveforms float32 [batch, samples] -> log-mel images [batch, n_mels, frames, 1].

    Computes in float32 whatever the mixed-precision policy (set dtype to override). Saved with
    the model through get_config; the filter bank is rebuilt from the config when loading.
    """

    def __init__(self, mel_config: MelConfig | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # The placement is how a run was trained, not what the layer computes (the same log-mel either way).
        self.mel_config = features_only(mel_config or MelConfig())

    def call(self, waveforms: tf.Tensor) -> tf.Tensor:
        # expand_dims, not [..., tf.newaxis]: TFLite's StridedSlice takes no new-axis mask with a dynamic
        # batch, and the exported .tflite files have one (trainer.inference.tflite_export).
        return tf.expand_dims(log_mel(waveforms, self.mel_config), -1)

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

    y = np.asarray(y, dtype=np.float32)
    if cfg.scaling == "pcen":
        y = y * np.float32(cfg.pcen_input_scale)
    power = librosa.feature.melspectrogram(
        y=y,
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
    if cfg.scaling == "pcen":
        import scipy.signal

        b = pcen_smoothing_coefficient(cfg)
        power = power.astype(np.float64)
        # Started at rest on the first frame (librosa's default zi is the rest state of a unit input: an onset
        # over the whole spectrum at every window's start).
        zi = scipy.signal.lfilter_zi([b], [1, b - 1]) * power[:, :1]
        return librosa.pcen(power, sr=cfg.sample_rate, hop_length=cfg.hop_length, gain=cfg.pcen_gain, b=b, zi=zi,
                            bias=cfg.pcen_bias, power=cfg.pcen_power, eps=cfg.pcen_eps).astype(np.float32)
    db = librosa.power_to_db(power, ref=1.0, amin=cfg.amin, top_db=cfg.top_db)
    if cfg.scaling == "db":
        return ((db - cfg.db_offset) / cfg.db_scale).astype(np.float32)
    span = db.max() - db.min()
    return ((db - db.min()) / span if span > 0 else np.zeros_like(db)).astype(np.float32)
