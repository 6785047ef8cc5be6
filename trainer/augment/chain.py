"""The training augmentation: its config, the chain built from it, and the seeded call tf.data makes.

The seed notebook's chain (every piece always applied; the defaults apply each at half that
probability and leave the pitch shift out, see AugmentConfig); the transforms are in
trainer.augment.waveform::

    Compose([OneOf([GaussianNoiseSNR(5..20 dB), PinkNoiseSNR(5..20 dB)]),
             PitchShift(-5..+5 semitones), TimeShift(-4..+4 s, "replace"),
             VolumeControl(-10..+10 dB, "sine")])

Before it, off by default, the field's effects (trainer.augment.field): TimeStretch, Reverb, RandomEQ; and
before those, off by default, background mixing (trainer.augment.background): the window plus a background
window of another training recording at a random SNR (the input pipeline draws the background windows).
First of the chain itself (after background mixing, when that is on), off by default, BlockShuffle
(trainer.augment.arrangement): the window's blocks between random cuts in a random order, so that a call's
arrangement of syllables stops being a cue.

Noise is cut from per-process banks by default (``noise_bank_seconds``; see
trainer.augment.waveform._NoiseSNR for the trade-off), 0 draws fresh noise per window as the seed did.

`build_augmentation` turns an `AugmentConfig` into an `Augmentation`: that chain, and, with
``pitch_shift_method="mel"`` (the default), the pitch shift moved to the mel front end: the
numpy side only draws the steps and returns them with the waveform, trainer.features.mel applies them as
warped mel filter banks (trainer.features.mel says why that lives there; `Augmentation` says why the order
is still the seed's). ``pitch_shift_method="librosa"`` shifts the waveform instead. The input
pipeline gives each element its own seed and calls `augment_with_seed` through `tf.numpy_function`.
benchmarks/bench_input.py measures the CPU cost of each piece.

Usage::

    from trainer.augment.chain import AugmentConfig, build_augmentation, augment_with_seed
    augmentation = build_augmentation(AugmentConfig(), sample_rate=48000, seed=0)
    y_aug, pitch_steps = augment_with_seed(augmentation, y, seed=1234)   # float32 [n] -> [n], int32
    y_aug, pitch_steps = augment_with_seed(augmentation, y, 1234, background=b)   # b float32 [n] (mixing on)
    features = trainer.features.mel.log_mel(y_aug, mel_cfg, pitch_steps, augmentation.max_pitch_steps)
    waveform_only = build_augmentation(AugmentConfig(pitch_shift_p=1.0, pitch_shift_method="librosa"), 48000).chain
    y_shifted = waveform_only(y, np.random.default_rng(1))                # float32 [n] -> [n]
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from core import choices, settings
from trainer.augment.arrangement import BlockShuffle
from trainer.augment.background import BackgroundMix
from trainer.augment.field import RandomEQ, Reverb, TimeStretch, check_positive
from trainer.augment.waveform import (
    AugmentError,
    Compose,
    GaussianNoiseSNR,
    OneOf,
    Padding,
    PinkNoiseSNR,
    PitchMethod,
    PitchShift,
    SnrReference,
    TimeShift,
    Transform,
    VolumeControl,
    VolumeMode,
    check_nonnegative,
    check_probability,
    check_range,
)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation chain; scalar fields only (one CLI flag / JSON key each).

    Defaults are the recipe's chain: the seed's pieces at half their probability and no pitch shift (a
    shift of a few semitones moves a species into its neighbour's band); SpecAugment and mixup off.
    The seed's own chain is every `*_p` at 1.0. A piece with probability 0 is left out of the chain;
    `enabled=False` leaves out everything (the input pipeline can then skip the numpy call).
    """

    # Bounds whose absurd values would exhaust memory (core.settings applies them to flags/files).
    LIMITS: ClassVar[dict[str, tuple[float | None, float]]] = {
        "noise_bank_seconds": (None, 3600), "noise_min_snr_db": (-100, 100), "noise_max_snr_db": (-100, 100),
        "pitch_shift_max_steps": (None, 48), "time_shift_max_seconds": (None, 3600), "volume_db_limit": (None, 100),
        "time_stretch_min": (0.1, 10), "time_stretch_max": (0.1, 10), "reverb_rt60_min": (None, 10),
        "reverb_rt60_max": (None, 10), "eq_lowpass_min_hz": (None, 1e6), "eq_lowpass_max_hz": (None, 1e6),
        "eq_highpass_min_hz": (None, 1e6), "eq_highpass_max_hz": (None, 1e6), "eq_peak_db_limit": (None, 40),
        "background_snr_db_min": (-100, 100), "background_snr_db_max": (-100, 100),
        "block_shuffle_blocks": (None, 1000)}

    enabled: bool = True
    noise_p: float = 0.5  # probability of adding one noise kind (chosen uniformly among those on)
    gaussian_noise: bool = True
    pink_noise: bool = True
    noise_bank_seconds: float = 60.0  # 0 = fresh noise per window; > 0 cut from a bank (see _NoiseSNR)
    noise_min_snr_db: float = 5.0
    noise_max_snr_db: float = 20.0
    noise_snr_reference: SnrReference = "peak"  # "peak" (the seed) | "rms"
    pitch_shift_p: float = 0.0
    pitch_shift_max_steps: int = 5
    pitch_shift_method: PitchMethod = "mel"  # "mel" (warped mel filter banks) | "librosa" (waveform)
    time_shift_p: float = 0.5
    time_shift_max_seconds: float = 4.0
    time_shift_padding: Padding = "replace"
    volume_p: float = 0.5
    volume_db_limit: float = 10.0
    volume_mode: VolumeMode = "sine"
    # Rearrangement (trainer.augment.arrangement), off by default: the window cut into block_shuffle_blocks
    # blocks at random points, put back in a random order (first in the chain, the singer's part).
    block_shuffle_p: float = 0.0
    block_shuffle_blocks: int = 4
    # Field effects (trainer.augment.field), off by default: time stretch, then reverb and EQ (see build_augmentation).
    time_stretch_p: float = 0.0
    time_stretch_min: float = 0.9  # rate; an event at t moves to t / rate, so the range stays small
    time_stretch_max: float = 1.1
    reverb_p: float = 0.0
    reverb_rt60_min: float = 0.2  # seconds for the tail to fall by 60 dB
    reverb_rt60_max: float = 1.0
    reverb_wet_min: float = 0.1  # reverberant share of the mix, in [0, 1]
    reverb_wet_max: float = 0.5
    eq_p: float = 0.0  # a low-pass, a high-pass or both, then a peaking filter if eq_peak_db_limit > 0
    eq_lowpass_min_hz: float = 6000.0
    eq_lowpass_max_hz: float = 16000.0
    eq_highpass_min_hz: float = 50.0
    eq_highpass_max_hz: float = 400.0
    eq_peak_db_limit: float = 6.0  # peaking gain drawn from [-limit, +limit] dB; 0 = none
    # Background mixing (trainer.augment.background), off by default: first in the chain, the window plus a
    # background slice of another training recording at an SNR (mean power, whole window) drawn from the range.
    background_mix_p: float = 0.0
    background_snr_db_min: float = 0.0
    background_snr_db_max: float = 10.0
    # After the log-mel, as TF ops (trainer.augment.spec): SpecAugment masks per example, mixup per batch.
    time_masks: int = 0  # masks of up to time_mask_fraction of the frames each
    time_mask_fraction: float = 0.1
    freq_masks: int = 0  # masks of up to freq_mask_fraction of the mel bands each
    freq_mask_fraction: float = 0.1
    mixup_p: float = 0.0  # share of a batch's examples mixed with another example of the batch
    mixup_alpha: float = 0.4  # mixing weight ~ Beta(alpha, alpha)

    def __post_init__(self) -> None:
        settings.check_types(self, AugmentError)
        choices.check(self, AugmentError)
        for name in ("noise_p", "pitch_shift_p", "time_shift_p", "volume_p", "time_stretch_p", "reverb_p", "eq_p",
                     "background_mix_p", "block_shuffle_p", "reverb_wet_min", "reverb_wet_max", "mixup_p", "time_mask_fraction", "freq_mask_fraction"):
            check_probability(name, getattr(self, name))
        for name in ("time_masks", "freq_masks", "noise_bank_seconds", "pitch_shift_max_steps",
                     "time_shift_max_seconds", "volume_db_limit", "eq_peak_db_limit"):
            check_nonnegative(name, getattr(self, name))
        for name in ("time_stretch_min", "reverb_rt60_min", "eq_lowpass_min_hz", "eq_highpass_min_hz"):
            check_positive(name, getattr(self, name))
        if self.block_shuffle_blocks < 2:
            raise AugmentError(f"block_shuffle_blocks must be >= 2, got {self.block_shuffle_blocks!r}")
        if not self.mixup_alpha > 0:
            raise AugmentError(f"mixup_alpha must be > 0, got {self.mixup_alpha!r}")
        check_range("noise_min_snr_db/noise_max_snr_db", self.noise_min_snr_db, self.noise_max_snr_db)
        check_range("background_snr_db_min/background_snr_db_max", self.background_snr_db_min,
                    self.background_snr_db_max)
        check_range("time_stretch_min/time_stretch_max", self.time_stretch_min, self.time_stretch_max)
        check_range("reverb_rt60_min/reverb_rt60_max", self.reverb_rt60_min, self.reverb_rt60_max)
        check_range("reverb_wet_min/reverb_wet_max", self.reverb_wet_min, self.reverb_wet_max)
        check_range("eq_lowpass_min_hz/eq_lowpass_max_hz", self.eq_lowpass_min_hz, self.eq_lowpass_max_hz)
        check_range("eq_highpass_min_hz/eq_highpass_max_hz", self.eq_highpass_min_hz, self.eq_highpass_max_hz)
        if not self.eq_highpass_max_hz < self.eq_lowpass_min_hz:
            raise AugmentError(f"eq_highpass_max_hz must be below eq_lowpass_min_hz, got {self.eq_highpass_max_hz} "
                               f">= {self.eq_lowpass_min_hz}")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The training augmentation: a waveform chain, then maybe a pitch shift done by the mel front end.

    Calling it with (y float32 [n], rng) returns (the chain's output float32 [n], pitch_steps):
    the semitones trainer.features.mel.log_mel must shift by (`pitch_steps=`, `max_pitch_steps=`
    `max_pitch_steps`), 0 without a mel-stage pitch shift. The steps are drawn first, from the same
    generator, so one seed still fixes everything.

    Why the shift can move to the end: the seed shifts pitch after adding noise (so the noise is
    shifted too, as here) and before the time shift and the volume envelope. A pitch shift that
    keeps the duration is time-invariant, so it commutes with a circular time shift; and a gain
    that is nearly constant over one STFT window passes through it: the +-10 dB sine envelope over
    10 s changes by at most 0.27 dB within a 43 ms window. So shifting the mel of the chain's output
    is, up to that, the seed's order.

    Parameters:
      chain: the waveform transforms (time stretch, reverb, EQ if on; noise, waveform pitch shift if any,
        time shift, volume).
      mel_pitch: PitchShift(method="mel") whose steps the mel front end applies, or None.
      background: BackgroundMix applied before the chain to the background window passed with the call,
        or None (then no background window is needed).
    """

    chain: Compose = Compose()
    mel_pitch: PitchShift | None = None
    background: BackgroundMix | None = None

    @property
    def max_pitch_steps(self) -> int:
        """The range of pitch_steps, [-max, max], i.e. of the warped mel banks to precompute."""
        return self.mel_pitch.max_steps if self.mel_pitch is not None else 0

    def __call__(self, y: np.ndarray, rng: np.random.Generator,
                 background: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        drawn = self.mel_pitch.draw(rng, y.shape[0]) if self.mel_pitch is not None else None
        if self.background is not None:
            # First: the mixture is what a recorder would have heard, and the field effects and the
            # recorder's noise of the chain then act on it as on any recording.
            y = self.background(y, background, rng)
        return self.chain(y, rng), (drawn["n_steps"] if drawn else 0)


def build_augmentation(cfg: AugmentConfig, sample_rate: int, seed: int = 0) -> Augmentation:
    """The augmentation described by `cfg` for audio at `sample_rate` Hz (the identity if disabled).

    `seed` (the training config's) seeds the per-process pink noise bank.
    """
    if not cfg.enabled:
        return Augmentation()
    transforms: list[Transform] = []
    # The field's effects in the order a call meets them: the singer's tempo (time stretch; first, so
    # that it stretches neither a reverb tail nor the recorder's noise), the forest it crosses (reverb),
    # the microphone and the air's loss of highs (EQ, which colours the reverberant field too), then
    # the recorder's noise and the seed's chain. Off by default, so the recipe's chain and its seeded
    # draws are unchanged.
    # Before them the singer's own variation: the arrangement of its syllables (block shuffle).
    if cfg.block_shuffle_p > 0:
        transforms.append(BlockShuffle(p=cfg.block_shuffle_p, blocks=cfg.block_shuffle_blocks,
                                       sample_rate=sample_rate))
    if cfg.time_stretch_p > 0:
        transforms.append(TimeStretch(p=cfg.time_stretch_p, min_rate=cfg.time_stretch_min,
                                      max_rate=cfg.time_stretch_max))
    if cfg.reverb_p > 0:
        transforms.append(Reverb(p=cfg.reverb_p, rt60_min=cfg.reverb_rt60_min, rt60_max=cfg.reverb_rt60_max,
                                 wet_min=cfg.reverb_wet_min, wet_max=cfg.reverb_wet_max, sample_rate=sample_rate))
    if cfg.eq_p > 0:
        transforms.append(RandomEQ(p=cfg.eq_p, lowpass_min_hz=cfg.eq_lowpass_min_hz,
                                   lowpass_max_hz=cfg.eq_lowpass_max_hz, highpass_min_hz=cfg.eq_highpass_min_hz,
                                   highpass_max_hz=cfg.eq_highpass_max_hz, peak_db_limit=cfg.eq_peak_db_limit,
                                   sample_rate=sample_rate))
    noise_kinds = [kind for kind, on in ((GaussianNoiseSNR, cfg.gaussian_noise), (PinkNoiseSNR, cfg.pink_noise)) if on]
    if noise_kinds and cfg.noise_p > 0:
        noises = tuple(
            kind(min_snr_db=cfg.noise_min_snr_db, max_snr_db=cfg.noise_max_snr_db, reference=cfg.noise_snr_reference,
                 bank_seconds=cfg.noise_bank_seconds, sample_rate=sample_rate, bank_seed=seed)
            for kind in noise_kinds
        )
        transforms.append(OneOf(noises, p=cfg.noise_p))
    mel_pitch = None
    if cfg.pitch_shift_p > 0 and cfg.pitch_shift_max_steps > 0:
        pitch = PitchShift(p=cfg.pitch_shift_p, max_steps=cfg.pitch_shift_max_steps, method=cfg.pitch_shift_method,
                           sample_rate=sample_rate)
        if pitch.method == "mel":
            mel_pitch = pitch  # drawn by Augmentation, applied by the mel front end
        else:
            transforms.append(pitch)
    if cfg.time_shift_p > 0 and cfg.time_shift_max_seconds > 0:
        transforms.append(
            TimeShift(
                p=cfg.time_shift_p,
                max_shift_seconds=cfg.time_shift_max_seconds,
                sample_rate=sample_rate,
                padding=cfg.time_shift_padding,
            )
        )
    if cfg.volume_p > 0 and cfg.volume_db_limit > 0:
        transforms.append(VolumeControl(p=cfg.volume_p, db_limit=cfg.volume_db_limit, mode=cfg.volume_mode))
    background = None
    if cfg.background_mix_p > 0:
        background = BackgroundMix(p=cfg.background_mix_p, min_snr_db=cfg.background_snr_db_min,
                                   max_snr_db=cfg.background_snr_db_max)
    return Augmentation(Compose(tuple(transforms)), mel_pitch, background)


def augment_with_seed(augmentation: Augmentation, y: np.ndarray, seed: Any,
                      background: np.ndarray | None = None) -> tuple[np.ndarray, np.int32]:
    """Applies `augmentation` to y with a generator seeded by `seed`: (float32 [n], int32 pitch steps).

    `background` (float32 [n]) is the window mixed in when the augmentation mixes backgrounds.

    This is the function tf.numpy_function calls with a per-element seed. `seed` is an int or an
    array of ints; negative int64 values (as tf.random produces) are taken by their bit pattern.
    """
    seed_words = np.atleast_1d(np.asarray(seed, dtype=np.int64)).view(np.uint64)
    rng = np.random.default_rng(seed_words)
    y = np.asarray(y, dtype=np.float32)
    if background is not None:
        background = np.asarray(background, dtype=np.float32)
    out, pitch_steps = augmentation(y, rng, background)
    if out.shape != y.shape:  # a transform bug, not a user error
        raise AssertionError(f"augmentation changed shape {y.shape} -> {out.shape}")
    return np.ascontiguousarray(out, dtype=np.float32), np.int32(pitch_steps)
