"""Where training runs: a tf.distribute strategy for `--strategy auto|default|mirrored|tpu`, and precision.

    auto      TPU if --tpu is given and resolves, else MirroredStrategy over all GPUs when there are
              two or more, else the default strategy (one GPU or the CPU)
    default   tf.distribute's default strategy (one device)
    mirrored  MirroredStrategy over all GPUs, or over all logical CPU devices when there is no GPU
    tpu       TPUStrategy on --tpu (a name, or "local" on a TPU VM); an error when it does not resolve

The batch size in the config is per replica: the global batch is batch_size x num_replicas.
Mixed precision computes in float16 on GPUs and bfloat16 on TPUs and CPUs (float16 there is slow or
unsupported); variables and the model's outputs stay float32.

    from trainer.model import strategy
    placement = strategy.resolve("auto", tpu="")
    strategy.set_precision(placement, enabled=True)
    with placement.strategy.scope(): ...
"""
from __future__ import annotations

import dataclasses
import logging

import keras
import tensorflow as tf

from core import choices
from core.errors import UserError
from trainer.recipe.config import StrategyName

# The values of --strategy (TrainConfig.strategy): see the module docstring.
Name = StrategyName

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Placement:
    """A resolved strategy and the kind of device its replicas run on."""

    strategy: tf.distribute.Strategy
    name: str  # "default" | "mirrored" | "tpu"
    device: str  # "cpu" | "gpu" | "tpu"

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as e:  # OSError: metadata lookups
        raise UserError(f"cannot connect to TPU {tpu or '(from the environment)'!r}: {e}") from e
    return tf.distribute.TPUStrategy(resolver)


def _mirrored() -> Placement:
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return Placement(tf.distribute.MirroredStrategy([d.name for d in devices]), "mirrored",
                     "gpu" if gpus else "cpu")


def _default() -> Placement:
    return Placement(tf.distribute.get_strategy(), "default",
                     "gpu" if tf.config.list_logical_devices("GPU") else "cpu")


def resolve(name: str, tpu: str = "") -> Placement:
    """The Placement for a --strategy value (see the module docstring)."""
    if name == "tpu":
        return Placement(_tpu_strategy(tpu), "tpu", "tpu")
    if name == "mirrored":
        return _mirrored()
    if name == "default":
        return _default()
    if name != "auto":
        raise UserError(f"unknown strategy {name!r}; choose one of {list(choices.of(Name))}")
    if tpu:
        try:
            return Placement(_tpu_strategy(tpu), "tpu", "tpu")
        except UserError as e:
            log.warning("%s; falling back to GPU/CPU", e)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return _mirrored()
    return _default()


def precision_policy(placement: Placement, enabled: bool) -> str:
    """Keras dtype policy name: float32, or mixed float16 (GPU) / bfloat16 (TPU, CPU)."""
    if not enabled:
        return "float32"
    return "mixed_float16" if placement.device == "gpu" else "mixed_bfloat16"


def set_precision(placement: Placement, enabled: bool) -> str:
    """Sets Keras's global dtype policy (before the model is built) and returns its name."""
    policy = precision_policy(placement, enabled)
    keras.mixed_precision.set_global_policy(policy)
    return policy
