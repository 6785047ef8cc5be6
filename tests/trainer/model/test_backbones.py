"""trainer.model.backbones: the "cnn" stack's layout and shapes, each backbone's minimum input, the config's checks."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.errors import UserError
from core.settings import ConfigError
from tests.helpers.recipe_config import FRAMES, N_MELS, small_config
from trainer.data import discovery
from trainer.model import network


def test_cnn_backbone_downsamples_by_8_and_doubles_its_width_per_block():
    cfg = small_config(backbone="cnn", cnn_width=8, cnn_blocks=4, cnn_convs=2, bn_momentum=0.8)
    net = network.build_model(cfg, discovery.input_shape(cfg))
    assert net.name == "rfcx_cnn" and net.output_shape == (None, 24)
    convs = [la for la in net.layers if isinstance(la, keras.layers.Conv2D)]
    assert [la.filters for la in convs] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert {la.kernel_size for la in convs} == {(3, 3)} and not any(la.use_bias for la in convs)
    pools = [la for la in net.layers if isinstance(la, keras.layers.AveragePooling2D)]
    assert len(pools) == 3  # none after the last block
    # 32 x 63 -> 16 x 31 -> 8 x 15 -> 4 x 7 (floored at each 2 x 2 pooling)
    assert convs[-1].output.shape == (None, N_MELS // 8, ((FRAMES // 2) // 2) // 2, 64) == (None, 4, 7, 64)
    # The stack's BatchNormalization layers take the configured momentum like ResNet50's (one per conv + the head's 2).
    bn = [la for la in network.iter_layers(net) if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bn) == 8 + 2 and {la.momentum for la in bn} == {0.8}


def test_cnn_backbone_trains_one_step_and_its_loss_falls_on_a_fixed_batch():
    cfg = small_config(backbone="cnn", cnn_width=8, cnn_blocks=3, cnn_convs=1, learning_rate=3e-3, dropout=0.0)
    shape = discovery.input_shape(cfg)
    net = network.build_model(cfg, shape)
    network.compile_model(net, cfg, steps_per_epoch=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *shape)).astype(np.float32)
    # Packed targets (trainer.data.targets): labels then the loss mask; every species known.
    labels = (rng.random((8, 24)) < 0.2).astype(np.float32)
    y = np.concatenate([labels, np.ones_like(labels)], axis=1)
    first = float(net.train_on_batch(x, y)[0])
    for _ in range(40):
        last = float(net.train_on_batch(x, y)[0])
    assert np.isfinite(first) and last < 0.6 * first


@pytest.mark.parametrize("backbone, blocks, n_mels, smallest", [
    ("cnn", 4, 4, 8), ("cnn", 3, 2, 4), ("mobilenetv2", 4, 16, 32)])
def test_inputs_below_the_backbones_minimum_are_a_user_error(backbone, blocks, n_mels, smallest):
    cfg = small_config(backbone=backbone, cnn_blocks=blocks, mel={"n_mels": n_mels})
    with pytest.raises(UserError, match=f"smaller than the {backbone} backbone's minimum {smallest} x {smallest}"):
        network.build_model(cfg, discovery.input_shape(cfg))


def test_mobilenetv2_backbone_downsamples_by_32_to_1280_channels():
    cfg = small_config(backbone="mobilenetv2")
    net = network.build_model(cfg, discovery.input_shape(cfg))
    assert net.name == "rfcx_mobilenetv2" and net.output_shape == (None, 24)
    backbone = next(la for la in net.layers if la.name.startswith("mobilenetv2"))
    assert backbone.output.shape == (None, 1, 2, 1280)  # 32 x 63 -> ceil(32/32) x ceil(63/32)


def test_cnn_at_its_minimum_input_builds():
    cfg = small_config(backbone="cnn", cnn_blocks=4, cnn_width=4, mel={"n_mels": 8})
    net = network.build_model(cfg, discovery.input_shape(cfg))
    assert net.output_shape == (None, 24)


@pytest.mark.parametrize("bad", [{"backbone": "vgg"}, {"cnn_width": 0}, {"cnn_blocks": 11}, {"cnn_convs": 0}])
def test_bad_backbone_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        small_config(**bad)
