"""Starting a classifier from a pretrained encoder: the weights of the layers both models share by name.

The classifier (trainer.model.network.build_model) and the pretraining encoder (trainer.pretrain.encoder) are
built on the same trunk (network.build_trunk), so their backbone layers carry the same names and shapes;
the head (classifier only) and the projection (encoder only) have names of their own and are left alone.
band_norm has no weights to copy (its statistics are constants of each model): each fold normalises by its own
training statistics, as without pretraining.

    from trainer.model import transfer
    copied = transfer.copy_shared_weights(encoder, net)   # names of the layers copied
"""
from __future__ import annotations

import keras

from core.errors import UserError
from trainer.model.network import iter_layers


def _weighted_layers(net: keras.Model) -> dict[str, keras.layers.Layer]:
    """{name: layer} of the innermost layers of `net` holding weights (a nested keras.applications model's too)."""
    return {layer.name: layer for layer in iter_layers(net)
            if layer.weights and not getattr(layer, "layers", None)}


def copy_shared_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies into `target` the weights of every layer `source` has under the same name.

    UserError when no layer is shared (another backbone) or a shared layer's weights differ in shape (another
    width, depth or input channels): the encoder was pretrained for another configuration.
    """
    sources, targets = _weighted_layers(source), _weighted_layers(target)
    shared = sorted(set(sources) & set(targets))
    if not shared:
        raise UserError(f"the pretrained encoder {source.name!r} shares no layer with the model {target.name!r}: "
                        f"pretrain with the backbone and flags the folds train with")
    for name in shared:
        have = [tuple(w.shape) for w in sources[name].get_weights()]
        want = [tuple(w.shape) for w in targets[name].get_weights()]
        if have != want:
            raise UserError(f"layer {name!r} of the pretrained encoder has weights of shapes {have}, the model's "
                            f"{want}: pretrain with the backbone settings (--cnn_width, --cnn_blocks, --cnn_convs, "
                            f"--freq_channel, --floor_channel) the folds train with")
    for name in shared:
        targets[name].set_weights(sources[name].get_weights())
    return shared
