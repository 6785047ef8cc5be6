"""Where training computes the log-mel (`--mel.device auto|host|model`) and what the input pipeline hands the model.

* "host": tf.data computes the log-mel on the host's CPU (trainer.data.inputs), and the model takes
  log-mels [B, n_mels, frames, 1]. The only choice without an accelerator: the same CPU would run both.
* "model": tf.data yields augmented waveforms and the model computes the log-mel as its first layer
  (trainer.model.front_end), on the accelerator. The host keeps the parse, the crop, the numpy
  waveform chain (tf.numpy_function) and the cheap random draws of the log-mel augmentations.
* "auto" (default): "model" when TensorFlow sees a GPU or TPU (tf.config.list_logical_devices), else "host".

Both placements draw the same randomness from the same seeds, so they train on the same log-mels
(up to float rounding): the host draws what depends on the mel and the model applies it. The
model-side training input, one dict per batch (the keys below are its only definition):

    WAVEFORM     float32 [B, window_samples]  the waveform after the numpy chain
    PITCH_STEPS  int32 [B]                    semitones of the mel-stage pitch shift (0 without one)
    FREQ_MASK    bool [B, n_mels]             SpecAugment: mel bands to mask (all False without masks)
    TIME_MASK    bool [B, frames]             SpecAugment: frames to mask
    MIX_PARTNER  int32 [B]                    mixup: the example each one is mixed with (itself without mixup)
    MIX_LAM      float32 [B]                  mixup: the weight of the example itself (1 = not mixed)

The exported model (trainer.inference.serving) and best.keras are the same in both placements.

    from trainer.features import placement
    where, why = placement.resolve(cfg.mel.device)    # ("model", "1 GPU(s) found") or ("host", ...)
"""
from __future__ import annotations

from typing import Literal

MelDevice = Literal["auto", "host", "model"]  # MelConfig.device
HOST, MODEL, AUTO = "host", "model", "auto"

WAVEFORM = "waveform"
PITCH_STEPS = "pitch_steps"
FREQ_MASK = "freq_mask"
TIME_MASK = "time_mask"
MIX_PARTNER = "mix_partner"
MIX_LAM = "mix_lam"
MODEL_INPUTS = (WAVEFORM, PITCH_STEPS, FREQ_MASK, TIME_MASK, MIX_PARTNER, MIX_LAM)


def accelerators() -> dict[str, int]:
    """{"GPU": n, "TPU": m} of the logical devices TensorFlow sees (a TPU only once its system is initialised)."""
    import tensorflow as tf

    return {kind: len(tf.config.list_logical_devices(kind)) for kind in ("GPU", "TPU")}


def resolve(device: str) -> tuple[str, str]:
    """(HOST or MODEL, why): "auto" becomes MODEL with a GPU/TPU, else HOST; the others stay as asked."""
    if device != AUTO:
        return device, "asked for"
    found = {kind: n for kind, n in accelerators().items() if n}
    if found:
        return MODEL, ", ".join(f"{n} {kind}(s) found" for kind, n in found.items())
    return HOST, "no GPU or TPU found (the model's log-mel would run on the same CPU as the input pipeline)"
