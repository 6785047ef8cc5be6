"""The log-mel as the model's first layer (`--mel.device model`): the training model around the classifier.

With the log-mel computed on the accelerator, the host feeds waveforms (trainer.features.placement
says what each batch holds and why) and training runs this model:

    {WAVEFORM [B, window], PITCH_STEPS [B], FREQ_MASK [B, n_mels], TIME_MASK [B, frames],
     MIX_PARTNER [B], MIX_LAM [B]}
      --TrainingFrontEnd: trainer.features.mel.log_mel, its filter bank pitch-warped by PITCH_STEPS
        (trainer.augment.pitch_warp), then SpecAugment (spec.apply_masks) and mixup (spec.mix_features)
        with the host's draws--> [B, n_mels, frames, 1]
      --classifier (trainer.model.network.build_model: band_norm, backbone, head)--> scores [B, num_classes]

The augmentations apply at training time only (Keras' training=True: fit); otherwise the layer is
exactly trainer.features.mel.LogMel. They are Keras layers that hold no randomness: the host draws it
with the same stateless seeds as with the log-mel on the host (trainer.data.inputs), so both
placements train on the same log-mels and targets, and the host keeps the cheap draws while the
accelerator does the arithmetic on full log-mels. Mixup mixes log-mels, not waveforms: the log-mel
of a mixed waveform is another augmentation, not this one (trainer.augment.spec); the host mixes
the targets.

The classifier is the model saved as best.keras and checkpoints/last.weights.h5 and exported
(trainer.inference.serving wraps LogMel + best.keras), so everything after training is the same in
both placements; `classifier_of` finds it, `scoring_model` is LogMel + the classifier for validation
on waveforms.

    from trainer.model import front_end, network
    classifier = network.build_model(cfg, shape, band_stats)
    net = front_end.build_training_model(cfg, classifier)     # fit(net) on inputs.train_dataset's dicts
    front_end.classifier_of(net) is classifier                 # what best.keras holds
    scorer = front_end.scoring_model(cfg, classifier)          # [B, window] waveforms -> [B, num_classes]
"""
from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from trainer.augment import chain
from trainer.augment import spec as spec_augment
from trainer.augment.chain import AugmentConfig
from trainer.data import discovery
from trainer.features import mel, placement
from trainer.recipe.config import TrainConfig


def max_pitch_steps(cfg: TrainConfig) -> int:
    """The range of the mel-stage pitch shift's steps ([-n, n]; 0 without one), as the host draws them."""
    return chain.build_augmentation(cfg.augment, cfg.mel.sample_rate, cfg.seed).max_pitch_steps


class TrainingFrontEnd(keras.layers.Layer):
    """The model-side inputs (trainer.features.placement) -> log-mels [B, n_mels, frames, 1], augmented when training.

    Computes in float32 whatever the mixed-precision policy (as LogMel). Never saved: best.keras is
    the classifier behind it.
    """

    def __init__(self, mel_config: mel.MelConfig, augment: AugmentConfig, pitch_steps: int, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mel_config = mel.features_only(mel_config)
        self.augment = augment
        self.pitch_steps = int(pitch_steps)

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        waveform = tf.cast(inputs[placement.WAVEFORM], tf.float32)  # [B, window]
        if training and self.pitch_steps:
            x = mel.log_mel(waveform, self.mel_config, inputs[placement.PITCH_STEPS], self.pitch_steps)
        else:
            x = mel.log_mel(waveform, self.mel_config)
        x = x[..., tf.newaxis]  # [B, n_mels, frames, 1]
        if training and spec_augment.masking_enabled(self.augment):
            x = spec_augment.apply_masks(x, inputs[placement.FREQ_MASK], inputs[placement.TIME_MASK])
        if training and spec_augment.mixup_enabled(self.augment):
            x = spec_augment.mix_features(x, inputs[placement.MIX_PARTNER], inputs[placement.MIX_LAM])
        return x

    def compute_output_shape(self, input_shape: dict[str, tuple]) -> tuple:
        samples = input_shape[placement.WAVEFORM][-1]
        frames = None if samples is None else mel.num_frames(samples, self.mel_config)
        return (input_shape[placement.WAVEFORM][0], self.mel_config.n_mels, frames, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mel_config": dataclasses.asdict(self.mel_config),
                "augment": dataclasses.asdict(self.augment), "pitch_steps": self.pitch_steps}


def model_inputs(cfg: TrainConfig) -> dict[str, keras.KerasTensor]:
    """keras.Input of every model-side input (shapes and dtypes of trainer.features.placement)."""
    n_mels, frames, _ = discovery.input_shape(cfg)
    specs = {placement.WAVEFORM: ((discovery.window_samples(cfg),), "float32"),
             placement.PITCH_STEPS: ((), "int32"), placement.FREQ_MASK: ((n_mels,), "bool"),
             placement.TIME_MASK: ((frames,), "bool"), placement.MIX_PARTNER: ((), "int32"),
             placement.MIX_LAM: ((), "float32")}
    return {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in specs.items()}


def build_training_model(cfg: TrainConfig, classifier: keras.Model) -> keras.Model:
    """The model fit trains with the log-mel in the model: TrainingFrontEnd + `classifier` (shared, not copied)."""
    inputs = model_inputs(cfg)
    front = TrainingFrontEnd(cfg.mel, cfg.augment, max_pitch_steps(cfg), name="training_front_end")
    scores = classifier(front(inputs))  # [B, num_classes]
    model = keras.Model(inputs, scores, name="rfcx_training")
    model.classifier = classifier  # classifier_of's handle (a tracked attribute, the same layer)
    return model


def classifier_of(model: keras.Model) -> keras.Model:
    """The classifier inside a training model of build_training_model; `model` itself for a classifier."""
    return getattr(model, "classifier", model)


def scoring_model(cfg: TrainConfig, classifier: keras.Model) -> keras.Model:
    """Waveforms float32 [B, window] -> scores [B, num_classes]: LogMel + `classifier` (shared), as served."""
    # Under the classifier's distribution strategy, so that predict runs on its replicas as fit does.
    with classifier.distribute_strategy.scope():
        waveform = keras.Input(shape=(discovery.window_samples(cfg),), dtype="float32", name=placement.WAVEFORM)
        scores = classifier(mel.LogMel(cfg.mel, name="log_mel")(waveform))
        return keras.Model(waveform, scores, name="rfcx_scoring")
