"""Training settings as one frozen dataclass tree, with presets, JSON config files and generated flags.

Every field of `TrainConfig` (and of its nested `MelConfig` / `AugmentConfig` sections) is settable
three ways, later ones winning: the preset (`--preset auto|full|cpu|tiny`), a JSON config file (`--config
FILE`, nested sections as objects) and a command-line flag generated from the field (`--epochs 3`,
`--mel.n_mels 64`, `--augment.pitch_shift_max_steps 3`, booleans as `--flag` / `--no-flag`). Flags and
file keys come from the dataclass fields themselves, so they cannot drift from the code.

    from trainer.recipe import config
    cfg = config.preset_config("tiny")
    cfg = config.apply_overrides(cfg, {"epochs": 3, "mel": {"n_mels": 64}})
    config.save_config(cfg, "runs/x/config.json"); config.load_run_config("runs/x")  # round trip

The file written to run_dir/config.json is the complete resolved config, so `--config
run_dir/config.json` reproduces a run.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, ClassVar, Literal, Mapping

from core import choices, fs, settings
from core.settings import ConfigError
from trainer.augment.chain import AugmentConfig
from trainer.features.mel import MelConfig

CONFIG_FILE = "config.json"  # in every run dir (trainer.training.run_layout)
# Settings that may change between an interrupted run and its resumption (trainer.training.train): how the
# run is executed or logged, and how many epochs it runs; not what an epoch learns.
RESUMABLE_FIELDS = frozenset({"epochs", "verbose", "strategy", "tpu", "jit_compile"})


Preset = Literal["full", "cpu", "tiny"]
# tf.distribute strategies trainer.model.strategy builds.
StrategyName = Literal["auto", "default", "mirrored", "tpu"]
# XLA compilation of the train/test/predict steps (Keras `compile(jit_compile=...)`): "auto" is Keras' own
# rule (XLA on a machine with a GPU/TPU unless a tf.distribute strategy is in use, never on a CPU-only one).
JitCompile = Literal["auto", "on", "off"]


# Bounds of settings whose absurd values would otherwise fail deep inside TensorFlow or numpy
# (int64 overflow, exhausted memory, a division by zero) instead of here: (low or None, high).
# Other lower bounds and cross-field rules live in each config class's __post_init__; the nested
# sections carry their own (MelConfig.LIMITS, AugmentConfig.LIMITS).
_LIMITS: settings.Limits = {
    "window_seconds": (None, 3600), "epochs": (None, 10**6), "steps_per_epoch": (None, 10**7),
    "batch_size": (None, 65536), "learning_rate": (None, 10), "warmup_epochs": (None, 10**6),
    "dense_units": (None, 65536), "cnn_width": (None, 4096), "cnn_blocks": (None, 10), "cnn_convs": (None, 8),
    "patience": (None, 10**6), "shuffle_buffer": (None, 10**6),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run.

    Defaults = the "full" preset: the seed's sizes and constants with the recipe's measured changes.
    """

    LIMITS: ClassVar[settings.Limits] = _LIMITS

    # The seed's front end and chain with the recipe's measured changes (README: "The training recipe"):
    # fixed-dB input standardised per mel band (not min-max per example), and a lighter chain.
    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig(scaling="db"))
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    window_seconds: float = 10.0  # training window cut from each slice (the seed's SLICE_TIME_WINDOWS)
    num_classes: int = 24
    loss: Literal["sigmoid", "softmax"] = "sigmoid"  # sigmoid + BCE on multi-hot; softmax + CCE = the seed
    epochs: int = 30
    # Optimizer steps per epoch; 0 = enough to draw every tp slice of the training folds once
    # (ceil(tp slices / (global batch x (1 - negative_fraction)))). An epoch is a number of draws
    # from the slice streams, not one pass over a fixed list.
    steps_per_epoch: int = 0
    batch_size: int = 32  # per replica; the global batch is batch_size x replicas
    # Share of each batch drawn from the negative slices (fp and background); the rest are tp slices.
    negative_fraction: float = 0.3
    # Class balance of the tp draws: species s's tp slices are drawn in proportion to n_s^(1 - class_balance),
    # n_s its tp slices in the manifest: 0 = as they come (the commonest species dominates), 0.5 = by the
    # square root of their counts, 1 = every species equally often (trainer.data.inputs.balanced_tp).
    class_balance: float = 0.0
    # Loss weight of a species about which a window says nothing (no tp or fp box of it): 0 masks it
    # (RFCX's partial labels), 1 takes absence as negative (exhaustive labels). See trainer.data.targets.
    unlabelled_weight: float = 0.1
    # Pseudo labels (trainer.pseudo writes them, trainer.data.soft_targets reads them): a sidecar CSV whose
    # out-of-fold scores become the targets of the species a training window's boxes say nothing about,
    # with loss weight soft_target_weight. "" = none.
    soft_targets: str = ""
    soft_target_weight: float = 1.0
    # A box counts for a window when at least this share of it (of the window, for longer boxes) is
    # inside; training crops keep that much of their slice's event inside.
    min_box_overlap: float = 0.5
    # Model input extras: a second channel holding each row's mel-bin index (scaled to [-1, 1]), so
    # the convolutions know the frequency; per-mel-band standardisation with training statistics.
    freq_channel: bool = True
    band_norm: bool = True
    # A further channel: the (band-normalised) log-mel minus each band's floor in the window, the floor_quantile
    # of its frames (trainer.model.network.FloorChannel): a call's level above its recording's own noise bed.
    floor_channel: bool = False
    floor_quantile: float = 0.25
    monitor: Literal["val_rec_lwlrap", "val_lwlrap", "val_loss"] = "val_rec_lwlrap"
    from_preset: Preset = "full"  # the preset this config started from (recorded; `--preset` sets it)
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine", "exponential"] = "cosine"
    warmup_epochs: float = 1.0  # linear warm-up from 0 (cosine schedule only)
    lr_decay_rate: float = 0.9  # factor per epoch (exponential schedule only)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4  # adamw only
    # Weight averaging: 0 = off; else the optimizer keeps an exponential moving average of the trainable weights,
    # updated every step with this momentum (Keras' use_ema), and validation, best.keras and last.weights.h5 take
    # the averaged weights while training goes on from the raw ones (trainer.training.callbacks.AveragedWeights).
    # BatchNormalization's moving statistics are the raw weights' (they follow them at bn_momentum).
    ema_momentum: float = 0.0
    # The convolutional trunk (trainer.model.backbones): "resnet50" = the seed's; "mobilenetv2"; "cnn" = a
    # PANNs-style stack of cnn_blocks blocks (widths cnn_width x 1, 2, 4, ...; cnn_convs 3x3 convolutions each),
    # downsampling by 8 instead of 32, for CPUs.
    backbone: Literal["resnet50", "mobilenetv2", "cnn"] = "resnet50"
    cnn_width: int = 32
    cnn_blocks: int = 4
    cnn_convs: int = 1
    # Classifier head on the backbone's features (trainer.model.heads): "gap" = the seed's (global average
    # pooling, Dense(dense_units, relu), Dense(num_classes)); "attention" / "max_avg" = SED-style (PANNs):
    # scores per time step of the feature map, pooled over time by learned attention or by (max + mean) / 2,
    # meant to keep a short call from being averaged away over the window ("attention" is the cpu preset's: measured
    # against "gap" and "max_avg" on the realistic benchmark, docs/results.md).
    # The framewise heads need loss "sigmoid".
    head: Literal["gap", "attention", "max_avg"] = "gap"
    head_freq_pool: Literal["mean", "max"] = "mean"  # how the framewise heads pool the feature map's frequency rows
    # A pretraining dir (trainer.pretrain, `make pretrain`) whose encoder the backbone starts from (its layers'
    # weights copied by name: trainer.model.transfer) instead of from random weights; "" = from scratch.
    init_from: str = ""
    dense_units: int = 1024  # the seed's head: Dense(1024, relu); the framewise heads' per-frame Dense
    dropout: float = 0.3
    # Momentum of every BatchNormalization moving average (backbone and head). Keras' default 0.99
    # (the seed's, implicitly) lags far behind the weights over the few hundred steps of a small run, so
    # validation and inference, which use the moving averages, see a different model than training;
    # 0.9 follows the weights.
    bn_momentum: float = 0.9
    # Early stopping on `monitor`; 0 (default) turns it off: the cosine schedule runs to its end and the
    # checkpoint keeps the best epoch, where stopping early would cut the schedule before it has decayed.
    patience: int = 0
    shuffle_buffer: int = 64  # serialized slices (~1 MB each at full size) shuffled after interleaving
    seed: int = 0
    deterministic: bool = True  # reproducible element order; False lets tf.data reorder for speed
    strategy: StrategyName = "auto"
    tpu: str = ""  # TPU name or "local" (TPU VM); auto uses the TPU only when this is set
    mixed_precision: bool = False  # float16 on GPU, bfloat16 on TPU/CPU; the outputs stay float32
    # XLA for the Keras steps (trainer.model.network.compile_model): "on" also on a CPU, "off" also on a GPU.
    # A run config.json written before this field loads with "auto", the behaviour of those runs.
    jit_compile: JitCompile = "auto"
    verbose: Literal[0, 1, 2] = 1  # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        choices.check(self, ConfigError)
        positive = {"window_seconds": self.window_seconds, "num_classes": self.num_classes,
                    "epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                    "dense_units": self.dense_units, "shuffle_buffer": self.shuffle_buffer,
                    "cnn_width": self.cnn_width, "cnn_blocks": self.cnn_blocks, "cnn_convs": self.cnn_convs}
        bad = [f"{k}={v} (must be > 0)" for k, v in positive.items() if not v > 0]
        if not 0.0 <= self.dropout < 1.0:
            bad.append(f"dropout={self.dropout} (must be in [0, 1))")
        if not 0.0 <= self.ema_momentum < 1.0:
            bad.append(f"ema_momentum={self.ema_momentum} (must be in [0, 1); 0 = no weight averaging)")
        if not 0.0 < self.bn_momentum < 1.0:
            bad.append(f"bn_momentum={self.bn_momentum} (must be in (0, 1))")
        for k in ("patience", "warmup_epochs", "weight_decay", "momentum", "steps_per_epoch"):
            if getattr(self, k) < 0:
                bad.append(f"{k}={getattr(self, k)} (must be >= 0)")
        for k in ("negative_fraction", "unlabelled_weight", "soft_target_weight", "floor_quantile",
                  "class_balance"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                bad.append(f"{k}={getattr(self, k)} (must be in [0, 1])")
        if self.negative_fraction == 1.0:
            bad.append("negative_fraction=1.0 (a batch needs tp slices; must be < 1)")
        if not 0.0 < self.min_box_overlap <= 1.0:
            bad.append(f"min_box_overlap={self.min_box_overlap} (must be in (0, 1])")
        if self.head != "gap" and self.loss != "sigmoid":
            bad.append(f"head={self.head!r} needs loss='sigmoid' (it pools per-species probabilities over time, "
                       f"which do not sum to 1 over species as softmax scores must)")
        if self.head == "gap" and self.head_freq_pool != "mean":
            bad.append(f"head_freq_pool={self.head_freq_pool!r} needs a framewise head (attention, max_avg); the "
                       f"seed's gap head averages the whole feature map")
        if self.band_norm and self.mel.scaling == "minmax":
            bad.append("band_norm needs mel.scaling 'db' or 'pcen' (min-max scaled inputs are already in [0, 1])")
        if not 0.0 < self.lr_decay_rate <= 1.0:
            bad.append(f"lr_decay_rate={self.lr_decay_rate} (must be in (0, 1])")
        if not 0 <= self.seed < 2**32:  # numpy's and Keras' seed range
            bad.append(f"seed={self.seed} (must be in [0, 2**32))")
        if bad:
            raise ConfigError("invalid training config: " + "; ".join(bad))


# Every preset runs the same code; only sizes and schedule differ. "full" is the seed's sizes (input
# 128 x 938) for accelerators; "cpu" is sized so that a 2-core machine trains a model that learns in
# minutes: the small "cnn" backbone, whose cheap steps buy the 2560 a fold needs, where the few hundred
# ResNet50 steps of the same budget under-fit, and the framewise "attention" head, which generalised to unseen
# call variants where the seed's average over the window did not, and beat "max_avg" out of fold, on PCEN
# features (mel.scaling "pcen"), which learnt faster and generalised better than fixed dB at both seed pairs
# measured, with the head taking the peak over frequency (head_freq_pool "max"), which added to it at both
# (figures: docs/results.md); "tiny" is the smallest that runs, for tests. "auto" picks "full" when an
# accelerator (TPU or GPU) is present, else "cpu" (resolve_preset).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "cpu": {"window_seconds": 3.0, "batch_size": 32, "epochs": 40, "steps_per_epoch": 64, "dense_units": 256,
            "backbone": "cnn", "head": "attention", "head_freq_pool": "max",
            "mel": {"n_fft": 2048, "hop_length": 1024, "n_mels": 64, "scaling": "pcen"}},
    "tiny": {"window_seconds": 2.0, "batch_size": 8, "epochs": 2, "dense_units": 64,
             "mel": {"n_fft": 1024, "hop_length": 1024, "n_mels": 32}},
}
AUTO = "auto"
PRESET_CHOICES = (AUTO, *choices.of(Preset))


def resolve_preset(name: str, tpu: str = "") -> tuple[str, str]:
    """(preset, why): "auto" becomes "full" with an accelerator (a TPU named by --tpu, or a GPU), else "cpu"."""
    if name != AUTO:
        return name, "asked for"
    if tpu:
        return "full", f"--tpu {tpu} is set"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "full", f"{len(gpus)} GPU(s) found"
    return "cpu", "no GPU or TPU found (the full-size ResNet50 would take hours per fold on a CPU)"




def apply_overrides(cfg: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """core.settings.apply_overrides (each section's LIMITS apply)."""
    return settings.apply_overrides(cfg, overrides, prefix)


def preset_config(name: str) -> TrainConfig:
    """The config of a named preset ("full" = the seed's sizes, "cpu" = learns on 2 cores, "tiny" = tests)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {list(PRESET_CHOICES)}")
    return apply_overrides(TrainConfig(), {**PRESETS[name], "from_preset": name})


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from a (possibly partial) dict over the "full" defaults; strict about keys."""
    return apply_overrides(TrainConfig(), data)


read_config_file = settings.read_json_object


def save_config(cfg: TrainConfig, path: str) -> None:
    fs.write_json(path, config_to_dict(cfg))


def load_run_config(run_dir: str) -> TrainConfig:
    """The resolved TrainConfig a run saved as run_dir/config.json."""
    path = fs.join(str(run_dir), CONFIG_FILE)
    try:
        return config_from_dict(read_config_file(path))
    except ConfigError as e:
        raise ConfigError(f"{e} (in the config of run {run_dir})") from e


# ---- command-line flags generated from the fields ----

def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per TrainConfig field (default None = "not given", so presets and files can apply)."""
    settings.add_flags(parser, TrainConfig, "training config (each also a key of the --config JSON file)",
                       default_label="default (full preset)")


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags actually given, as a nested dict for apply_overrides."""
    return settings.flag_overrides(args, TrainConfig)


def resolve_config(preset: str, config_file: str | None, args: argparse.Namespace) -> TrainConfig:
    """preset < config file < flags; "auto" is resolved first, with one log line saying which and why."""
    if preset == AUTO:
        preset, why = resolve_preset(preset, getattr(args, "tpu", None) or "")
        logging.getLogger("trainer.recipe.config").info("--preset auto: using the %s preset (%s)", preset, why)
    cfg = preset_config(preset)
    if config_file:
        cfg = apply_overrides(cfg, read_config_file(config_file))
    return settings.apply_overrides(cfg, flag_overrides(args), flags=True)


def flatten(cfg: TrainConfig) -> dict[str, Any]:
    """{"mel.n_mels": 128, "epochs": 10, ...}: every leaf setting under its dotted flag name."""
    return settings.flatten(cfg)


config_differences = settings.differences
