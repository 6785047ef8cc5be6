"""trainer.model and trainer.strategy: shapes from the config, the seed's head, precision, optimizers."""
from __future__ import annotations

import math

import keras
import librosa
import numpy as np
import pytest

from pipeline.errors import UserError
from trainer import config, data, model, strategy
from trainer.config import TrainConfig


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_full_input_shape_matches_librosa_mel_of_a_10_s_window():
    cfg = TrainConfig()
    mel = librosa.feature.melspectrogram(y=np.zeros(10 * 48000, np.float32), sr=48000, n_fft=2048, hop_length=512,
                                         n_mels=128, fmin=84, fmax=15056)
    assert data.input_shape(cfg) == (*mel.shape, 1) == (128, 938, 1)


def test_tiny_model_has_the_seeds_head_and_sigmoid_scores():
    cfg = config.preset_config("tiny")
    shape = data.input_shape(cfg)
    net = model.build_model(cfg, shape)
    assert net.input_shape == (None, 32, 94, 1) and net.output_shape == (None, 24)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Functional", "GlobalAveragePooling2D", "BatchNormalization", "Dropout", "Dense",
                     "BatchNormalization", "Dropout", "Dense"]
    assert net.layers[0].name == "resnet50" and net.layers[0].output_shape == (None, 1, 3, 2048)
    assert [net.layers[i].rate for i in (3, 6)] == [0.3, 0.3]
    assert net.layers[4].units == cfg.dense_units and net.layers[4].activation.__name__ == "relu"
    assert net.layers[-1].activation.__name__ == "sigmoid"
    # Every BatchNormalization, the 53 of the backbone and the 2 of the head, uses the configured momentum.
    bn = [la for la in net._flatten_layers() if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bn) == 55 and {la.momentum for la in bn} == {cfg.bn_momentum} and cfg.bn_momentum != 0.99
    scores = net.predict(np.random.default_rng(0).random((2, *shape), np.float32), verbose=0)
    assert scores.shape == (2, 24) and ((scores > 0) & (scores < 1)).all()
    assert not np.allclose(scores.sum(axis=1), 1.0)


def test_softmax_loss_gives_the_seeds_softmax_and_categorical_cross_entropy():
    cfg = config.apply_overrides(config.preset_config("tiny"), {"loss": "softmax"})
    net = model.build_model(cfg, data.input_shape(cfg))
    model.compile_model(net, cfg, steps_per_epoch=3)
    assert isinstance(net.loss, keras.losses.CategoricalCrossentropy)
    scores = net.predict(np.zeros((2, 32, 94, 1), np.float32), verbose=0)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_mixed_precision_computes_in_bfloat16_on_cpu_with_float32_scores(float32_policy):
    placement = strategy.resolve("default")
    assert strategy.set_precision(placement, True) == "mixed_bfloat16"
    cfg = config.preset_config("tiny")
    net = model.build_model(cfg, data.input_shape(cfg))
    conv = next(layer for layer in net.layers[0].layers if type(layer).__name__ == "Conv2D")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert net.layers[-1].compute_dtype == "float32"
    assert net.predict(np.zeros((1, 32, 94, 1), np.float32), verbose=0).dtype == np.float32


@pytest.mark.parametrize("n_mels, hop", [(16, 1024), (32, 8192)])
def test_inputs_below_32_by_32_are_a_user_error(n_mels, hop):
    cfg = config.apply_overrides(config.preset_config("tiny"), {"mel": {"n_mels": n_mels, "hop_length": hop}})
    shape = data.input_shape(cfg)
    with pytest.raises(UserError, match="smaller than ResNet50's minimum 32 x 32"):
        model.build_model(cfg, shape)


def test_learning_rate_schedules_follow_their_formulas():
    steps, lr = 10, 1e-3
    base = config.apply_overrides(TrainConfig(), {"epochs": 4, "learning_rate": lr})
    assert model.learning_rate(base, steps) == lr
    cosine = model.learning_rate(config.apply_overrides(base, {"lr_schedule": "cosine"}), steps)
    for t in (0, 13, 40):
        assert float(cosine(t)) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * t / 40)), rel=1e-5, abs=1e-9)
    warm = model.learning_rate(config.apply_overrides(base, {"lr_schedule": "cosine", "warmup_epochs": 1.0}), steps)
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(lr / 2, rel=1e-5)
    assert float(warm(10)) == pytest.approx(lr, rel=1e-5)
    expo = model.learning_rate(config.apply_overrides(base, {"lr_schedule": "exponential", "lr_decay_rate": 0.5}),
                               steps)
    assert float(expo(20)) == pytest.approx(lr * 0.25, rel=1e-5)


def test_optimizer_choices():
    cfg = TrainConfig()
    assert type(model.make_optimizer(cfg, 5)).__name__ == "Adam"
    assert float(model.make_optimizer(cfg, 5).learning_rate) == pytest.approx(1e-3)
    sgd = model.make_optimizer(config.apply_overrides(cfg, {"optimizer": "sgd", "momentum": 0.8}), 5)
    assert type(sgd).__name__ == "SGD" and sgd.momentum == 0.8 and sgd.nesterov
    adamw = model.make_optimizer(config.apply_overrides(cfg, {"optimizer": "adamw", "weight_decay": 0.01}), 5)
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == 0.01


def test_strategy_resolution_on_a_cpu_machine():
    auto = strategy.resolve("auto")
    assert (auto.name, auto.device, auto.num_replicas) == ("default", "cpu", 1)
    assert strategy.precision_policy(auto, False) == "float32"
    assert strategy.resolve("default").num_replicas == 1
