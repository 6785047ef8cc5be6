"""`python -m trainer.pretrain` end to end on the tiny shards, and a fold that starts from what it wrote."""
from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from core.settings import ConfigError
from tests.helpers.recipe_config import as_config_file_content, recipe_config
from trainer.data import discovery
from trainer.model import network
from trainer.pretrain import run
from trainer.training import run_layout as layout
from trainer.training import train

# Tiny sizes, a small cnn trunk, band_norm on (its statistics come from the pairs).
CFG = recipe_config({"batch_size": 4, "epochs": 1, "steps_per_epoch": 2, "verbose": 0, "backbone": "cnn",
                     "cnn_width": 4, "cnn_blocks": 2, "head": "attention", "dense_units": 8, "band_norm": True,
                     "freq_channel": True, "mel": {"scaling": "db"}})
PRETRAIN_FLAGS = ["--pretrain.epochs", "2", "--pretrain.steps_per_epoch", "2", "--pretrain.batch_size", "4",
                  "--pretrain.embedding_dim", "8", "--pretrain.projection_units", "8"]


@pytest.fixture(scope="module")
def settings_file(module_tmp_path):
    path = module_tmp_path / "settings.json"
    path.write_text(json.dumps(as_config_file_content(CFG)))
    return str(path)


@pytest.fixture(scope="module")
def pretrained(tiny_shards, settings_file, module_tmp_path):
    out = str(module_tmp_path / "pretrain")
    summary = run.main(["--shards_dir", tiny_shards, "--out_dir", out, "--preset", "tiny", "--config", settings_file,
                        *PRETRAIN_FLAGS])
    return out, summary


def test_pretraining_writes_the_encoder_its_history_settings_and_summary(pretrained):
    out, summary = pretrained
    history = pd.read_csv(layout.path(out, layout.PRETRAIN_HISTORY))
    assert list(history["epoch"]) == [0, 1]
    assert np.isfinite(history["loss"]).all() and history["pair_accuracy"].between(0, 1).all()
    assert summary["chance_pair_accuracy"] == 0.25 and summary["global_batch_size"] == 4
    saved = json.loads(open(layout.path(out, layout.PRETRAIN_SUMMARY)).read())
    assert saved["final_loss"] == pytest.approx(float(history["loss"].iloc[-1]), rel=1e-5)
    settings = json.loads(open(layout.path(out, layout.PRETRAIN_CONFIG)).read())
    assert settings["pretrain"]["epochs"] == 2 and settings["train"]["cnn_width"] == 4
    assert settings["train"]["mel"]["device"] == "host"
    encoder = keras.models.load_model(layout.path(out, layout.ENCODER), compile=False)
    x = np.zeros((3, *encoder.input_shape[1:]), np.float32)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(encoder(x)), axis=1), 1.0, rtol=1e-5)  # unit embeddings


def test_a_finished_pretraining_is_not_overwritten_without_overwrite(pretrained, tiny_shards, settings_file):
    out, _ = pretrained
    with pytest.raises(UserError, match="already holds a finished pretraining"):
        run.main(["--shards_dir", tiny_shards, "--out_dir", out, "--preset", "tiny", "--config", settings_file])


@pytest.mark.parametrize("flags,message", [
    (["--pretrain.temperature", "0"], "temperature=0.0"),
    (["--pretrain.batch_size", "1"], "at least one other pair"),
    (["--pretrain.test_share", "1.5"], "test_share"),
    (["--fold", "0"], "--fold and --run_dir"),
])
def test_bad_pretraining_flags_are_clear_errors(flags, message, tmp_path):
    with pytest.raises((ConfigError, UserError), match=message):
        run.parse_args(["--shards_dir", "x", "--out_dir", str(tmp_path), *flags])


class FirstWeights(keras.callbacks.Callback):
    """Records the trunk's first convolution kernel as training starts."""

    kernel = None

    def on_train_begin(self, logs=None):
        FirstWeights.kernel = self.model.get_layer("cnn_block1_conv1").get_weights()[0].copy()


def test_a_fold_with_init_from_starts_from_the_pretrained_trunk(pretrained, tiny_shards, tmp_path):
    out, _ = pretrained
    encoder = keras.models.load_model(layout.path(out, layout.ENCODER), compile=False)
    want = encoder.get_layer("cnn_block1_conv1").get_weights()[0]
    cfg = recipe_config(as_config_file_content(CFG), {"init_from": out})
    train.train_fold(cfg, tiny_shards, 0, str(tmp_path / "run"), callbacks=[FirstWeights()])
    np.testing.assert_array_equal(FirstWeights.kernel, want)
    assert json.loads(open(tmp_path / "run" / "config.json").read())["init_from"] == out
    # The initial kernel of the same seed is another one: the copy, not the seed, made them equal.
    keras.utils.set_random_seed(cfg.seed)
    scratch = network.build_model(cfg, discovery.input_shape(cfg), (np.zeros(32), np.ones(32)))
    assert not np.allclose(scratch.get_layer("cnn_block1_conv1").get_weights()[0], want)


def test_init_from_a_dir_without_a_finished_pretraining_fails_before_the_run_dir_is_touched(tiny_shards, tmp_path):
    cfg = recipe_config(as_config_file_content(CFG), {"init_from": str(tmp_path / "nothing")})
    with pytest.raises(UserError, match="holds no finished pretraining"):
        train.train_fold(cfg, tiny_shards, 0, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_init_from_a_pretraining_of_another_trunk_is_refused_naming_the_setting(pretrained, tiny_shards, tmp_path):
    out, _ = pretrained
    cfg = recipe_config(as_config_file_content(CFG), {"init_from": out, "cnn_blocks": 3})
    with pytest.raises(UserError, match="--cnn_blocks 2 \\(the fold: 3\\)"):
        train.train_fold(cfg, tiny_shards, 0, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
