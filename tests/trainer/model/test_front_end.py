"""trainer.model.front_end and --mel.device: the log-mel in the model gives what the host gives, and trains.

The same seeded training stream is built in both placements (trainer.features.placement): the host's
log-mels must equal the model's front end applied to the host's waveforms and draws, with and
without augmentation (pitch warp, SpecAugment, mixup), and its targets must be the same. A
classifier must score the validation windows alike from the host's log-mels and from waveforms
through the model. Last, a tiny run with the log-mel in the model trains, and what it leaves is a
best.keras on log-mels that predict and serving use as they use any run's.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import (
    RATE,
    as_config_file_content,
    recipe_config,
    small_config,
)
from trainer.augment import spec
from trainer.data import discovery, inputs
from trainer.features import mel, placement
from trainer.inference import predict, serving
from trainer.model import front_end, network
from trainer.recipe import config
from trainer.training import runs, train

AUGMENTED = {"enabled": True, "pitch_shift_p": 1.0, "pitch_shift_max_steps": 3, "pitch_shift_method": "mel",
             "time_shift_p": 1.0, "time_masks": 2, "time_mask_fraction": 0.2, "freq_masks": 2,
             "freq_mask_fraction": 0.2, "mixup_p": 1.0, "mixup_alpha": 1.0}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return sf.write_shards(str(tmp_path_factory.mktemp("shards")), sf.three_kind_folds(), sample_rate=RATE,
                           slice_seconds=2.0, files_per_fold=2)


def _placed(cfg: config.TrainConfig, device: str) -> config.TrainConfig:
    return config.apply_overrides(cfg, {"mel": {"device": device}})


@pytest.mark.parametrize("augment", [{}, AUGMENTED], ids=["plain", "augmented"])
def test_both_placements_train_on_the_same_log_mels_and_targets(shards, augment):
    cfg = small_config(negative_fraction=0.25, augment=augment)
    files = discovery.prepare_fold(shards, 0, cfg).train_files_by_kind
    host = list(inputs.train_dataset(files, _placed(cfg, "host"), 4, 3).take(3))
    model_side = list(inputs.train_dataset(files, _placed(cfg, "model"), 4, 3).take(3))
    layer = front_end.TrainingFrontEnd(cfg.mel, cfg.augment, front_end.max_pitch_steps(cfg))
    assert front_end.max_pitch_steps(cfg) == (3 if augment else 0)
    for (x, y), (model_inputs, y_model) in zip(host, model_side):
        assert set(model_inputs) == set(placement.MODEL_INPUTS)
        assert model_inputs[placement.WAVEFORM].shape == (4, discovery.window_samples(cfg))
        computed = layer(model_inputs, training=True).numpy()  # [4, n_mels, frames, 1]
        assert computed.shape == x.shape == (4, *discovery.input_shape(cfg))
        np.testing.assert_allclose(computed, x.numpy(), atol=2e-5)
        np.testing.assert_array_equal(y_model.numpy(), y.numpy())
    if augment:  # the augmentations did something, and only at training time
        plain = layer(model_side[0][0], training=False).numpy()
        waveforms = model_side[0][0][placement.WAVEFORM]
        np.testing.assert_allclose(plain, mel.log_mel(waveforms, cfg.mel)[..., None].numpy(), atol=1e-6)
        assert not np.allclose(plain, host[0][0].numpy(), atol=1e-3)
        assert (np.asarray(model_side[0][0][placement.MIX_LAM]) < 1).any()


def test_a_classifier_scores_alike_from_host_log_mels_and_from_waveforms_in_the_model(shards):
    cfg = small_config(mel={"scaling": "db"}, band_norm=True, freq_channel=True)
    fold = discovery.prepare_fold(shards, 0, cfg)
    shape = discovery.input_shape(cfg)
    band_stats = (np.linspace(-1.0, 1.0, shape[0]), np.linspace(0.5, 2.0, shape[0]))
    classifier = network.build_model(cfg, shape, band_stats)
    host = inputs.eval_dataset(fold.val_files, _placed(cfg, "host"), batch_size=4, num_examples=fold.num_val)
    on_model = inputs.eval_dataset(fold.val_files, _placed(cfg, "model"), batch_size=4, num_examples=fold.num_val)
    scorer = front_end.scoring_model(cfg, classifier)
    training_model = front_end.build_training_model(cfg, classifier)
    assert front_end.classifier_of(training_model) is classifier and front_end.classifier_of(classifier) is classifier
    for a, b in zip(host, on_model):
        assert "x" not in b and b["waveform"].shape == (len(a["x"]), discovery.window_samples(cfg))
        np.testing.assert_array_equal(a["y"].numpy(), b["y"].numpy())
        expected = classifier(a["x"], training=False).numpy()
        np.testing.assert_allclose(scorer(b["waveform"], training=False).numpy(), expected, atol=1e-5)
        batch = len(a["x"])
        dict_inputs = {placement.WAVEFORM: b["waveform"], placement.PITCH_STEPS: tf.zeros([batch], tf.int32),
                       placement.FREQ_MASK: tf.ones([batch, shape[0]], tf.bool),  # ignored outside training
                       placement.TIME_MASK: tf.zeros([batch, shape[1]], tf.bool),
                       placement.MIX_PARTNER: tf.range(batch), placement.MIX_LAM: tf.ones([batch])}
        np.testing.assert_allclose(training_model(dict_inputs, training=False).numpy(), expected, atol=1e-5)


def test_auto_computes_the_log_mel_on_the_host_without_an_accelerator(caplog):
    if any(placement.accelerators().values()):
        pytest.skip("this machine has a GPU or TPU")
    assert placement.resolve("auto") == ("host", placement.resolve("auto")[1])
    assert placement.resolve("model")[0] == "model" and placement.resolve("host")[0] == "host"
    cfg = small_config()
    assert cfg.mel.device == "auto" and not inputs.mel_on_model(cfg)
    with caplog.at_level("INFO"):
        assert train.resolve_mel_device(cfg).mel.device == "host"
    assert "--mel.device auto" in caplog.text
    # The flag exists, and the placement is not part of the features (the exported LogMel drops it).
    args, parsed = train.parse_args(["--shards_dir", "s", "--fold", "0", "--run_dir", "r", "--preset", "tiny",
                                     "--mel.device", "model"])
    assert parsed.mel.device == "model"
    assert mel.LogMel(parsed.mel).mel_config == mel.LogMel(config.preset_config("tiny").mel).mel_config
    with pytest.raises(config.ConfigError, match="device"):
        config.apply_overrides(cfg, {"mel": {"device": "gpu"}})


def test_mixup_partners_stay_on_their_replica():
    cfg = small_config(augment={"enabled": True, "mixup_p": 1.0, "mixup_alpha": 1.0}).augment
    for i in range(20):
        partner, lam, chosen = (t.numpy() for t in spec.draw_mixup(8, cfg, tf.constant([i, 7], tf.int64), replicas=2))
        assert (partner // 4 == np.arange(8) // 4).all() and (partner != np.arange(8)).all() and chosen.all()
    x = tf.constant(np.arange(4, dtype=np.float32)[:, None] + 10 * np.arange(4, dtype=np.float32)[None, :4])
    # A replica holding the second half of that batch (rows 4..7) finds partner 6 at its row 2.
    mixed = spec.mix_features(x, tf.constant([6, 5, 4, 7]), tf.constant([0.5, 1.0, 1.0, 0.25])).numpy()
    np.testing.assert_allclose(mixed[0], 0.5 * x.numpy()[0] + 0.5 * x.numpy()[2])
    np.testing.assert_allclose(mixed[3], 0.25 * x.numpy()[3] + 0.75 * x.numpy()[3])
    np.testing.assert_array_equal(mixed[1:3], x.numpy()[1:3])


def test_a_run_with_the_log_mel_in_the_model_trains_and_leaves_a_usual_best_keras(tiny_shards, tmp_path):
    recipe = recipe_config({"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "verbose": 0, "band_norm": True,
                            "mel": {"scaling": "db", "device": "model"}, "augment": AUGMENTED,
                            "learning_rate": 3e-3})
    settings = tmp_path / "recipe.json"
    settings.write_text(json.dumps(as_config_file_content(recipe)))
    run_dir = tmp_path / "fold0"
    args, cfg = train.parse_args(["--shards_dir", tiny_shards, "--fold", "0", "--run_dir", str(run_dir),
                                  "--preset", "tiny", "--config", str(settings)])
    summary = train.train_fold(cfg, args.shards_dir, args.fold, args.run_dir)
    assert summary["mel_device"] == "model" and config.load_run_config(str(run_dir)).mel.device == "model"
    assert np.isfinite(summary["val_loss"]) and summary["epochs_run"] == 1
    run = runs.open_run(str(run_dir))
    best = runs.load_model(run)  # checked against config.json's log-mel shape
    assert best.input_shape == (None, *discovery.input_shape(cfg))
    assert best.get_layer("band_norm") is not None
    runs.load_model(run).load_weights(os.path.join(run_dir, "checkpoints", "last.weights.h5"))  # the classifier's
    # predict scores the test recordings with it (LogMel + best.keras), as for a run trained on the host.
    out = tmp_path / "submission.csv"
    predict.main(["--run_dir", str(run_dir), "--shards_dir", tiny_shards, "--output", str(out)])
    assert out.exists() and (tmp_path / "fold0" / serving.SERVING_MODEL).exists()
    served = serving.load_serving(str(run_dir))
    log_mel = [la for la in served.layers if isinstance(la, mel.LogMel)][0]
    assert log_mel.mel_config.device == "auto"  # the export does not depend on where training put the log-mel
    waves = np.random.default_rng(0).normal(0, 0.1, (2, run.window_samples)).astype(np.float32)
    expected = best(mel.log_mel(waves, cfg.mel)[..., None], training=False).numpy()
    np.testing.assert_allclose(served(waves, training=False).numpy(), expected, atol=1e-5)
