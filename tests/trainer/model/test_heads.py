"""trainer.model.heads: the framewise (SED-style) heads' pooling on hand-computed frames, and each head
built into the network, trained one step, its scores and embedding recomputed in numpy, saved and reloaded.

The seed's head ("gap", the default) is tested in test_model.py; its export in tests/trainer/inference.
Model tests use small inputs (tests/recipe_config: 32 mels x 63 frames -> T' = 2 time steps).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from core.settings import ConfigError
from tests.helpers.recipe_config import FRAMES, N_MELS, small_config
from trainer.data import discovery
from trainer.model import heads, network

LN3 = math.log(3.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_attention_pooling_weights_each_frame_by_its_species_softmax_over_time():
    # One clip, 3 frames, 2 species.
    # Species 0: attention logits (0, ln 3, 0) -> weights (1/5, 3/5, 1/5); frame probabilities
    # sigmoid(0, ln 3, -ln 3) = (1/2, 3/4, 1/4) -> 1/10 + 9/20 + 1/20 = 0.6.
    # Species 1: the middle frame attended far above the others -> its probability alone, sigmoid(2);
    # a plain mean over the frames would give (2 sigmoid(-5) + sigmoid(2)) / 3, about 0.30.
    logits = np.array([[[0.0, -5.0], [LN3, 2.0], [-LN3, -5.0]]], np.float32)  # [1, 3, 2]
    attention = np.array([[[0.0, 0.0], [LN3, 30.0], [0.0, 0.0]]], np.float32)  # [1, 3, 2]
    scores = np.asarray(heads.AttentionPooling(dtype="float32")([logits, attention]))
    assert scores.shape == (1, 2)
    np.testing.assert_allclose(scores, [[0.6, 1.0 / (1.0 + math.exp(-2.0))]], rtol=1e-5)


def test_max_avg_pooling_is_half_the_max_plus_half_the_mean_over_time():
    # Species 0: probabilities (1/2, 3/4, 1/4) -> (3/4 + 1/2) / 2 = 0.625. Species 1: all 1/2 -> 1/2.
    logits = np.array([[[0.0, 0.0], [LN3, 0.0], [-LN3, 0.0]]], np.float32)  # [1, 3, 2]
    np.testing.assert_allclose(np.asarray(heads.MaxAvgPooling(dtype="float32")(logits)), [[0.625, 0.5]], rtol=1e-5)


def test_frequency_mean_averages_the_rows():
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2)  # [B, F=2, T=3, C=2]
    np.testing.assert_allclose(np.asarray(heads.FrequencyMean()(x)), (x[:, 0] + x[:, 1]) / 2)


@pytest.mark.parametrize("head", ["attention", "max_avg"])
def test_framewise_head_trains_and_its_scores_pool_its_frames(head, tmp_path):
    cfg = small_config(head=head)
    shape = discovery.input_shape(cfg)
    net = network.build_model(cfg, shape)
    steps = math.ceil(FRAMES / 32)  # T': the backbone's time steps
    assert net.input_shape == (None, N_MELS, FRAMES, 1) and net.output_shape == (None, 24)
    assert net.get_layer("frame_embedding").output.shape == (None, steps, cfg.dense_units)
    assert net.get_layer("frame_logits").output.shape == (None, steps, 24)
    assert net.layers[-1].name == "scores"

    network.compile_model(net, cfg, steps_per_epoch=1)
    rng = np.random.default_rng(0)
    x = rng.random((4, *shape), np.float32)
    labels = np.eye(24, dtype=np.float32)[[1, 2, 3, 4]]
    y = np.concatenate([labels, np.ones_like(labels)], axis=1)  # packed targets: every label known
    before = net.get_layer("frame_logits").get_weights()[0].copy()
    loss = net.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss) and loss > 0
    assert not np.array_equal(before, net.get_layer("frame_logits").get_weights()[0])

    # The scores are the head's pooling rule applied to its own frame outputs, recomputed in numpy.
    frame_layers = ["frame_logits"] + (["frame_attention"] if head == "attention" else [])
    probe = keras.Model(net.input, [net.get_layer(n).output for n in frame_layers]
                        + [net.get_layer("frame_embedding").output, net.output])
    # Eager calls, not predict: no tf.function to trace for each of these small models.
    *frames, frame_embedding, scores = (np.asarray(t) for t in probe(x, training=False))
    probs = _sigmoid(frames[0].astype(np.float64))  # [4, T', 24]
    if head == "attention":
        weights = np.exp(frames[1] - frames[1].max(axis=1, keepdims=True))
        expected = (weights / weights.sum(axis=1, keepdims=True) * probs).sum(axis=1)
    else:
        expected = (probs.max(axis=1) + probs.mean(axis=1)) / 2
    assert scores.shape == (4, 24) and scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)

    # The embedding the export takes: the framewise Dense(units) averaged over time, [B, units].
    embedding = np.asarray(keras.Model(net.input, heads.embedding_output(net))(x, training=False))
    assert embedding.shape == (4, cfg.dense_units)
    np.testing.assert_allclose(embedding, frame_embedding.mean(axis=1), rtol=1e-5, atol=1e-6)

    if head == "attention":  # saved as best.keras and loaded (the custom layers registered), the same scores
        assert keras.saving.get_registered_object("rfcx>AttentionPooling") is heads.AttentionPooling
        net.save(tmp_path / "best.keras")
        loaded = keras.saving.load_model(tmp_path / "best.keras", compile=False)
        assert isinstance(loaded.get_layer("scores"), heads.AttentionPooling)
        np.testing.assert_allclose(np.asarray(loaded(x, training=False)), scores, rtol=1e-5, atol=1e-6)


def test_framewise_head_keeps_its_scores_in_float32_under_mixed_precision(float32_policy):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cfg = small_config(head="attention", mixed_precision=True)
    net = network.build_model(cfg, discovery.input_shape(cfg))
    assert net.get_layer("frame_embedding").compute_dtype == "bfloat16"
    assert {net.get_layer(n).compute_dtype for n in ("frame_logits", "frame_attention", "scores")} == {"float32"}
    assert np.asarray(net(np.zeros((1, N_MELS, FRAMES, 1), np.float32), training=False)).dtype == np.float32


def test_embedding_of_a_model_without_a_known_head_is_refused():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="cannot find its embedding"):
        heads.embedding_output(keras.Model(inputs, keras.layers.Dense(2, name="scores")(inputs)))


def test_frequency_max_takes_each_rows_peak_and_the_head_pools_with_it_when_asked(tmp_path):
    x = np.array([[[[1.0, -2.0]], [[3.0, -5.0]], [[0.5, -1.0]]]], np.float32)  # [B=1, F=3, T=1, C=2]
    np.testing.assert_allclose(np.asarray(heads.FrequencyMax()(x)), [[[3.0, -1.0]]])
    cfg = small_config(head="attention", head_freq_pool="max")
    net = network.build_model(cfg, discovery.input_shape(cfg))
    names = {layer.name for layer in net.layers}
    assert "freq_max" in names and "freq_mean" not in names
    assert "freq_mean" in {layer.name for layer in network.build_model(small_config(head="attention"),
                                                                      discovery.input_shape(cfg)).layers}
    features = net.get_layer("freq_max").input  # [B, F', T', D]
    probe = keras.Model(net.input, [features, net.get_layer("freq_max").output])
    inputs = np.random.default_rng(0).random((2, *discovery.input_shape(cfg)), np.float32)
    grid, pooled = (np.asarray(t) for t in probe(inputs, training=False))
    np.testing.assert_allclose(pooled, grid.max(axis=1), rtol=1e-6)
    with pytest.raises(ConfigError, match="head_freq_pool='max' needs a framewise head"):
        small_config(head="gap", head_freq_pool="max")
    net.save(tmp_path / "best.keras")  # registered: a saved run loads with the same pooling
    loaded = keras.saving.load_model(tmp_path / "best.keras", compile=False)
    np.testing.assert_allclose(np.asarray(loaded(inputs, training=False)), np.asarray(net(inputs, training=False)),
                               rtol=1e-5, atol=1e-6)
