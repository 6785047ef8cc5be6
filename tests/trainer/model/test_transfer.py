"""Copying a pretrained encoder's trunk into a classifier: every shared layer's weights, nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from tests.helpers.recipe_config import small_config
from trainer.data import discovery
from trainer.model import network, transfer
from trainer.pretrain import encoder
from trainer.pretrain.config import PretrainConfig

CNN = {"backbone": "cnn", "cnn_width": 4, "cnn_blocks": 2, "head": "attention", "freq_channel": True,
       "band_norm": True, "mel": {"scaling": "db"}}


def stats(cfg):
    n_mels = cfg.mel.n_mels
    return np.linspace(-1, 1, n_mels, dtype=np.float32), np.linspace(0.5, 2, n_mels, dtype=np.float32)


def build_pair(**overrides):
    cfg = small_config(**{**CNN, **overrides})
    shape = discovery.input_shape(cfg)
    return cfg, encoder.build_encoder(cfg, PretrainConfig(embedding_dim=8, projection_units=8), shape, stats(cfg)), \
        network.build_model(cfg, shape, stats(cfg))


def test_the_trunk_is_copied_and_the_head_is_left_alone():
    cfg, enc, net = build_pair()
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in network.iter_layers(net)}
    copied = transfer.copy_shared_weights(enc, net)
    assert copied == sorted(["cnn_block1_conv1", "cnn_block1_conv1_bn", "cnn_block2_conv1", "cnn_block2_conv1_bn"])
    for name in copied:
        for got, want in zip(net.get_layer(name).get_weights(), enc.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    head = [layer for layer in network.iter_layers(net)
            if layer is not net and layer.get_weights() and layer.name not in copied]
    assert head, "the attention head has weights of its own"
    for layer in head:
        for got, want in zip(layer.get_weights(), before[layer.name]):
            np.testing.assert_array_equal(got, want)


def test_the_copied_trunk_gives_the_classifier_the_encoders_feature_map():
    cfg, enc, net = build_pair()
    transfer.copy_shared_weights(enc, net)
    x = np.random.default_rng(0).normal(size=(2, *discovery.input_shape(cfg))).astype(np.float32)
    import keras

    def trunk(model):
        return keras.Model(model.input, model.get_layer("cnn_block2_conv1_relu").output)(x)

    np.testing.assert_allclose(np.asarray(trunk(net)), np.asarray(trunk(enc)), rtol=1e-5, atol=1e-6)


def test_an_encoder_of_another_width_is_a_user_error_naming_the_layer():
    _, enc, _ = build_pair(cnn_width=4)
    _, _, net = build_pair(cnn_width=8)
    with pytest.raises(UserError, match="cnn_block1_conv1.*--cnn_width"):
        transfer.copy_shared_weights(enc, net)


def test_an_encoder_of_another_backbone_shares_nothing_and_is_a_user_error():
    _, enc, _ = build_pair()
    cfg = small_config(**{**CNN, "backbone": "mobilenetv2", "head": "gap"})
    net = network.build_model(cfg, discovery.input_shape(cfg), stats(cfg))
    with pytest.raises(UserError, match="shares no layer"):
        transfer.copy_shared_weights(enc, net)
