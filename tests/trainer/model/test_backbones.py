"""trainer.model.backbones: the "cnn" stack's layout and shapes, each backbone's minimum input, the config's checks."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.errors import UserError
from core.settings import ConfigError
from tests.helpers.recipe_config import FRAMES, N_MELS, small_config
from trainer.data import discovery
from trainer.model import backbones, network


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


def cnn_stack_model(cfg) -> keras.Model:
    inputs = keras.Input(shape=discovery.input_shape(cfg))
    return keras.Model(inputs, backbones.cnn_stack(cfg, inputs))


def frames_reached(cfg, frame: int) -> list[int]:
    """The time steps of the "cnn" stack's output whose features change when input frame `frame` changes."""
    shape = discovery.input_shape(cfg)
    stack = cnn_stack_model(cfg)
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    bumped = x.copy()
    bumped[:, :, frame, :] += 5.0
    change = np.abs(stack.predict(bumped, verbose=0) - stack.predict(x, verbose=0)).max(axis=(0, 1, 3))  # [T']
    return [t for t in range(change.size) if change[t] > 1e-4]


def test_frequency_only_blocks_shorten_the_time_receptive_field():
    # 4 blocks, pools between them: a frame's features span 38 input frames with 3 x 3 kernels everywhere,
    # 14 when the last two blocks convolve along frequency only (3 x 1); the output steps are 8 frames apart.
    # (BatchNormalization at inference is per channel, so it spreads nothing along time.)
    full = small_config(backbone="cnn", cnn_width=4, cnn_blocks=4)
    local = small_config(backbone="cnn", cnn_width=4, cnn_blocks=4, cnn_freq_only_blocks=2)
    reached_full, reached_local = frames_reached(full, 28), frames_reached(local, 28)
    assert len(reached_full) >= 4 and 3 in reached_full
    assert 1 <= len(reached_local) <= 2 and set(reached_local) <= {2, 3, 4}
    convs = [la for la in cnn_stack_model(local).layers if isinstance(la, keras.layers.Conv2D)]
    assert [la.kernel_size for la in convs] == [(3, 3), (3, 3), (3, 1), (3, 1)]


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


@pytest.mark.parametrize("bad", [{"backbone": "vgg"}, {"cnn_width": 0}, {"cnn_blocks": 11}, {"cnn_convs": 0},
                                 {"cnn_freq_only_blocks": 5}, {"cnn_freq_only_blocks": -1}])
def test_bad_backbone_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        small_config(**bad)
