"""trainer.model.network and trainer.model.strategy: shapes from the config, the seed's head, input extras, precision, optimizers.

Model tests use small inputs (tests/recipe_config: 32 mels x 63 frames) with every recipe field set
explicitly; the `cpu` preset test trains one step at that preset's own sizes on a real batch.
"""
from __future__ import annotations

import math

import keras
import librosa
import numpy as np
import pytest

from core import schema
from core.errors import UserError
from core.settings import ConfigError
from pipeline.demo_data import background, synthesize_call
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import FRAMES, N_MELS, small_config
from trainer.data import discovery, inputs
from trainer.model import network, strategy
from trainer.recipe import config
from trainer.recipe.config import TrainConfig


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _bn_layers(net: keras.Model) -> list[keras.layers.Layer]:
    return [la for la in network.iter_layers(net) if isinstance(la, keras.layers.BatchNormalization)]


def test_full_input_shape_matches_librosa_mel_of_a_10_s_window():
    cfg = config.preset_config("full")
    mel = librosa.feature.melspectrogram(y=np.zeros(10 * 48000, np.float32), sr=48000, n_fft=2048, hop_length=512,
                                         n_mels=128, fmin=84, fmax=15056)
    assert discovery.input_shape(cfg) == (*mel.shape, 1) == (128, 938, 1)


def test_small_model_has_the_seeds_head_and_sigmoid_scores():
    cfg = small_config(bn_momentum=0.9, dropout=0.3)
    shape = discovery.input_shape(cfg)
    assert shape == (N_MELS, FRAMES, 1)
    net = network.build_model(cfg, shape)
    assert net.input_shape == (None, N_MELS, FRAMES, 1) and net.output_shape == (None, 24)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["InputLayer", "Functional", "GlobalAveragePooling2D", "BatchNormalization", "Dropout", "Dense",
                     "BatchNormalization", "Dropout", "Dense"]
    backbone = net.get_layer("resnet50")
    assert backbone.output.shape == (None, math.ceil(N_MELS / 32), math.ceil(FRAMES / 32), 2048)
    assert [net.layers[i].rate for i in (4, 7)] == [0.3, 0.3]
    assert net.layers[5].units == cfg.dense_units and net.layers[5].activation.__name__ == "relu"
    assert net.layers[-1].activation.__name__ == "sigmoid"
    # Every BatchNormalization, the 53 of the backbone and the 2 of the head, uses the configured momentum.
    bn = _bn_layers(net)
    assert len(bn) == 55 and {la.momentum for la in bn} == {0.9}
    # One device: plain batch statistics (synchronised across replicas only with several; tests/trainer/training/test_train.py).
    assert {la.synchronized for la in bn} == {False}
    scores = net.predict(np.random.default_rng(0).random((2, *shape), np.float32), verbose=0)
    assert scores.shape == (2, 24) and ((scores > 0) & (scores < 1)).all()
    assert not np.allclose(scores.sum(axis=1), 1.0)


def test_softmax_loss_gives_the_seeds_softmax_and_categorical_cross_entropy():
    cfg = small_config(loss="softmax")
    net = network.build_model(cfg, discovery.input_shape(cfg))
    network.compile_model(net, cfg, steps_per_epoch=3)
    labels = np.eye(24, dtype=np.float32)[[3, 5]]
    scores = net.predict(np.zeros((2, N_MELS, FRAMES, 1), np.float32), verbose=0)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    y = np.concatenate([labels, np.ones_like(labels)], axis=1)  # packed targets
    expected = float(keras.losses.CategoricalCrossentropy()(labels, scores))
    assert float(net.loss(y, scores)) == pytest.approx(expected, rel=1e-5)


def test_input_extras_band_norm_and_freq_channel_and_the_saved_model(tmp_path):
    cfg = small_config(band_norm=True, freq_channel=True, mel={"scaling": "db"})
    rng = np.random.default_rng(1)
    mean, variance = rng.normal(size=N_MELS), rng.uniform(0.5, 4.0, N_MELS)
    net = network.build_model(cfg, (N_MELS, FRAMES, 1), band_stats=(mean, variance))
    x = rng.normal(2.0, 1.5, (3, N_MELS, FRAMES, 1)).astype(np.float32)

    # band_norm: each mel band standardised with its own (given) statistics.
    normed = keras.Model(net.inputs, net.get_layer("band_norm").output).predict(x, verbose=0)
    expected = (x - mean[None, :, None, None]) / np.sqrt(variance)[None, :, None, None]
    np.testing.assert_allclose(normed, expected, rtol=1e-5, atol=1e-5)
    # freq_channel: a second channel holding the mel-bin index, lowest band -1, highest +1, same on every frame.
    both = keras.Model(net.inputs, net.get_layer("freq_channel").output).predict(x, verbose=0)
    assert both.shape == (3, N_MELS, FRAMES, 2)
    np.testing.assert_allclose(both[..., 0], expected[..., 0], rtol=1e-5, atol=1e-5)
    ramp = -1.0 + 2.0 * np.arange(N_MELS) / (N_MELS - 1)
    np.testing.assert_allclose(both[..., 1], np.broadcast_to(ramp[None, :, None], (3, N_MELS, FRAMES)), atol=1e-6)
    assert net.get_layer("resnet50").input.shape == (None, N_MELS, FRAMES, 2)
    # The model input stays the plain log-mel.
    assert net.input_shape == (None, N_MELS, FRAMES, 1)

    # Saved and loaded (the custom layer registered under the project's package), it predicts the same.
    assert keras.saving.get_registered_object("rfcx>FrequencyChannel") is network.FrequencyChannel
    before = net.predict(x, verbose=0)
    net.save(tmp_path / "best.keras")
    loaded = keras.saving.load_model(tmp_path / "best.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, rtol=1e-5, atol=1e-6)


def test_floor_channel_is_each_bands_level_above_its_own_floor_in_the_window(tmp_path):
    cfg = small_config(floor_channel=True, floor_quantile=0.25, freq_channel=True)
    net = network.build_model(cfg, (N_MELS, FRAMES, 1))
    rng = np.random.default_rng(2)
    # Each example and band: a bed at its own level (0.01 x a permutation of 0..62 above it) and a call of +40 on
    # frames 20..29, above every bed frame: the 0.25 quantile of 63 frames is the 16th lowest, a bed frame.
    level = rng.normal(0.0, 5.0, (2, N_MELS, 1))
    bed = np.stack([np.stack([rng.permutation(FRAMES) for _ in range(N_MELS)]) for _ in range(2)]) * 0.01
    x = (level + bed).astype(np.float32)
    x[:, :, 20:30] += 40.0
    floor = np.quantile(x, 0.25, axis=-1, method="lower", keepdims=True)
    np.testing.assert_allclose(floor, level + np.sort(bed[..., np.r_[0:20, 30:FRAMES]], axis=-1)[..., 15:16])
    out = keras.Model(net.inputs, net.get_layer("freq_channel").output).predict(x[..., None], verbose=0)
    assert out.shape == (2, N_MELS, FRAMES, 3)  # log-mel, floor channel, frequency channel
    np.testing.assert_allclose(out[..., 0], x, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], x - floor, atol=1e-4)
    assert np.all(out[:, :, 20:30, 1] > 39.0) and np.all(out[:, :, :20, 1] < 1.0)  # the call stands out of the bed
    # Saved and loaded with its quantile.
    net.save(tmp_path / "best.keras")
    loaded = keras.saving.load_model(tmp_path / "best.keras", compile=False)
    assert loaded.get_layer("floor_channel").quantile == 0.25
    np.testing.assert_allclose(loaded.predict(x[..., None], verbose=0), net.predict(x[..., None], verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_band_norm_needs_statistics_and_db_scaling():
    with pytest.raises(ValueError, match="band_norm needs"):
        network.build_model(small_config(band_norm=True, mel={"scaling": "db"}), (N_MELS, FRAMES, 1))
    with pytest.raises(config.ConfigError, match="band_norm needs mel.scaling 'db' or 'pcen'"):
        small_config(band_norm=True, mel={"scaling": "minmax"})


def _cpu_shards(tmp_path, cfg: TrainConfig) -> str:
    """Two folds of demo-style slices (a call over background noise) at the preset's rate, 1 s longer than its window."""
    rate = cfg.mel.sample_rate
    seconds = cfg.window_seconds + 1.0
    rng = np.random.default_rng(0)

    def audio(species: int | None) -> np.ndarray:
        y = background(int(seconds * rate), rng)
        if species is not None:
            call = synthesize_call("tone", 500.0 + 400 * species, 700.0 + 400 * species, 0.8, 5.0, rate)
            start = int(0.5 * rate)
            y[start:start + len(call)] += 0.3 * call
        return (np.clip(y, -1, 1) * 32767).astype(np.int16)

    by_fold = {}
    for fold in (0, 1):
        examples = [sf.train_example(f"r{fold}{i}", fold, species=i % 3, t_min=0.5, t_max=1.3, audio=audio(i % 3),
                                     sample_rate=rate, row_index=i) for i in range(4)]
        examples.append(sf.train_example(f"r{fold}0", fold, species=5, t_min=0.5, t_max=1.3, audio=audio(None),
                                         sample_rate=rate, row_index=9, kind=schema.KIND_FP))
        examples.append(sf.train_example(f"r{fold}1", fold, species=-1, t_min=0.0, t_max=0.0, audio=audio(None),
                                         sample_rate=rate, kind=schema.KIND_BACKGROUND))
        by_fold[fold] = examples
    return sf.write_shards(str(tmp_path), by_fold, sample_rate=rate, slice_seconds=seconds)


def test_cpu_preset_builds_and_trains_one_step_on_a_real_batch(tmp_path, float32_policy):
    # The preset's sizes and model; the schedule explicit (a warm-up from 0 would make step 0 a no-op).
    cfg = config.apply_overrides(config.preset_config("cpu"), {"optimizer": "adam", "learning_rate": 1e-3,
                                                                "lr_schedule": "constant"})
    assert cfg.from_preset == "cpu"
    batch = 4  # a small batch keeps the step cheap
    fold = discovery.prepare_fold(_cpu_shards(tmp_path, cfg), 0, cfg)
    x, y = next(iter(inputs.train_dataset(fold.train_files_by_kind, cfg, batch, steps_per_epoch=1)))
    # The model input, from the preset's own window and STFT (librosa's centred frame count).
    frames = 1 + int(round(cfg.window_seconds * cfg.mel.sample_rate)) // cfg.mel.hop_length
    assert x.shape == (batch, cfg.mel.n_mels, frames, 1) and y.shape == (batch, 2 * cfg.num_classes)
    strategy.set_precision(strategy.resolve("default"), cfg.mixed_precision)
    band_stats = None
    if cfg.band_norm:  # statistics of this batch stand in for the training set's
        values = x.numpy().astype(np.float64)
        band_stats = (values.mean(axis=(0, 2, 3)), values.var(axis=(0, 2, 3)) + 1e-6)
    net = network.build_model(cfg, (cfg.mel.n_mels, frames, 1), band_stats)
    assert net.input_shape == (None, cfg.mel.n_mels, frames, 1) and net.output_shape == (None, cfg.num_classes)
    network.compile_model(net, cfg, steps_per_epoch=1)
    before = [v.numpy().copy() for v in net.trainable_variables]
    loss = net.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss) and loss > 0
    after = [v.numpy() for v in net.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # the step changed the weights


def test_mixed_precision_computes_in_bfloat16_on_cpu_with_float32_scores(float32_policy):
    placement = strategy.resolve("default")
    assert strategy.set_precision(placement, True) == "mixed_bfloat16"
    cfg = small_config()
    net = network.build_model(cfg, discovery.input_shape(cfg))
    conv = next(layer for layer in net.get_layer("resnet50").layers if type(layer).__name__ == "Conv2D")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert net.layers[-1].compute_dtype == "float32"
    assert net.predict(np.zeros((1, N_MELS, FRAMES, 1), np.float32), verbose=0).dtype == np.float32


@pytest.mark.parametrize("n_mels, hop", [(16, 256), (32, 8192)])
def test_inputs_below_32_by_32_are_a_user_error(n_mels, hop):
    cfg = small_config(mel={"n_mels": n_mels, "hop_length": hop})
    shape = discovery.input_shape(cfg)
    with pytest.raises(UserError, match="smaller than the resnet50 backbone's minimum 32 x 32"):
        network.build_model(cfg, shape)


def _schedule_cfg(**kw) -> TrainConfig:
    return config.apply_overrides(TrainConfig(), {"epochs": 4, "learning_rate": 1e-3, "lr_schedule": "constant",
                                                  "warmup_epochs": 0.0, **kw})


def test_learning_rate_schedules_follow_their_formulas():
    steps, lr = 10, 1e-3
    assert network.learning_rate(_schedule_cfg(), steps) == lr
    cosine = network.learning_rate(_schedule_cfg(lr_schedule="cosine"), steps)
    for t in (0, 13, 40):
        assert float(cosine(t)) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * t / 40)), rel=1e-5, abs=1e-9)
    warm = network.learning_rate(_schedule_cfg(lr_schedule="cosine", warmup_epochs=1.0), steps)
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(lr / 2, rel=1e-5)
    assert float(warm(10)) == pytest.approx(lr, rel=1e-5)
    # After the warm-up: cosine over the remaining 30 steps.
    assert float(warm(25)) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 15 / 30)), rel=1e-5)
    expo = network.learning_rate(_schedule_cfg(lr_schedule="exponential", lr_decay_rate=0.5), steps)
    assert float(expo(20)) == pytest.approx(lr * 0.25, rel=1e-5)


def test_jit_compile_reaches_keras_and_an_xla_train_step_runs_on_cpu(float32_policy):
    # A small dense model instead of the ResNet50: XLA-compiling the ResNet costs a minute of the suite;
    # the step, loss and LWLRAP metric compiled here are the ones compile_model gives every model.
    shape = discovery.input_shape(small_config())
    off = network.build_model(small_config(), shape)
    network.compile_model(off, small_config(jit_compile="off"), steps_per_epoch=1)
    assert off.jit_compile is False
    cfg = small_config(jit_compile="on", optimizer="adam", lr_schedule="constant", learning_rate=1e-3)
    net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(cfg.num_classes, activation="sigmoid")])
    network.compile_model(net, cfg, steps_per_epoch=1)
    assert net.jit_compile is True  # XLA even on this CPU-only machine, where Keras' "auto" would not use it
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    labels = (rng.random((4, cfg.num_classes)) < 0.2).astype(np.float32)
    y = np.concatenate([labels, np.ones_like(labels)], axis=1)  # packed [labels | weights]
    before = [v.numpy().copy() for v in net.trainable_variables]
    loss = net.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss) and loss > 0
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, net.trainable_variables))


def test_jit_compile_on_that_keras_cannot_honour_is_a_config_error():
    class NoXla(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.supports_jit = False  # as Keras marks layers XLA cannot compile

        def call(self, x):
            return x

    net = keras.Sequential([keras.Input((4,)), NoXla(), keras.layers.Dense(24, activation="sigmoid")])
    with pytest.raises(ConfigError, match="jit_compile=on"):
        network.compile_model(net, small_config(jit_compile="on"), steps_per_epoch=1)
    network.compile_model(net, small_config(jit_compile="auto"), steps_per_epoch=1)  # Keras' rule: no XLA here
    assert net.jit_compile is False


def test_optimizer_choices():
    cfg = _schedule_cfg(optimizer="adam")
    assert type(network.make_optimizer(cfg, 5)).__name__ == "Adam"
    assert float(network.make_optimizer(cfg, 5).learning_rate) == pytest.approx(1e-3)
    sgd = network.make_optimizer(config.apply_overrides(cfg, {"optimizer": "sgd", "momentum": 0.8}), 5)
    assert type(sgd).__name__ == "SGD" and sgd.momentum == 0.8 and sgd.nesterov
    adamw = network.make_optimizer(config.apply_overrides(cfg, {"optimizer": "adamw", "weight_decay": 0.01}), 5)
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == 0.01


def test_strategy_resolution_on_a_cpu_machine():
    auto = strategy.resolve("auto")
    assert (auto.name, auto.device, auto.num_replicas) == ("default", "cpu", 1)
    assert strategy.precision_policy(auto, False) == "float32"
    assert strategy.resolve("default").num_replicas == 1
