"""make export: the SavedModel's two signatures and the TFLite files score like the Keras serving model.

Runs: tiny-preset models built by tests.helpers.tiny_run (real network, BatchNormalization statistics
from one forward pass; training would cost minutes), one float32 and one mixed-precision. Audio: the
tiny demo shards' test recordings (made by the project's generator). Expected values come from the
run's Keras serving model (trainer.inference.serving, what trainer.predict uses) on windows cut by
core.windows in numpy; embeddings are checked through the head's last layers recomputed in numpy.

Tolerances, on scores in [0, 1]. Float32 forms (SavedModel, TFLite float, the float32 export of a
mixed-precision run vs the same weights in float32): 1e-3 absolute; the graphs are the same
arithmetic, but kernels and fusions differ (oneDNN, XNNPACK) and these untrained models amplify
round-off through 50 layers (observed up to 1.5e-4). Rounded forms (TFLite int8 weights; a
mixed-precision run's own bfloat16 Keras model vs its float32 export): the untrained models here turn
small weight changes into large score changes (observed: mean |difference| 0.12-0.13, correlation
0.83-0.87 over windows x species), so the test asks only correlation >= 0.6 and mean |difference|
<= 0.25, i.e. the same function, roughly. How close int8 comes on a trained model (same test LWLRAP)
is measured by benchmarks/bench_export.py (docs/results.md).
"""
from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import export_layout as layout
from core.windows import cut_windows, default_stride, window_starts
from tests.helpers.common import expect_user_error
from tests.helpers.tiny_run import make_tiny_run
from trainer.data import recordings
from trainer.data.discovery import read_manifest
from trainer.inference import export, export_model, serving, tflite_export
from trainer.training import runs

FLOAT_ATOL = 1e-3
ROUNDED_MIN_CORR, ROUNDED_MAX_MEAN_DIFF = 0.6, 0.25


@pytest.fixture(scope="module")
def waves(tiny_shards) -> list[np.ndarray]:
    """Test recordings (12 s at 48 kHz) plus cut versions: 4.3 s (a last window off the stride), 0.5 s (short)."""
    recs = [r.waveform for r in recordings.iter_test_recordings(tiny_shards, read_manifest(tiny_shards))]
    rate = 48000
    return [recs[0], recs[1][: int(4.3 * rate)], recs[2][: rate // 2], recs[2][rate: 3 * rate]]


@pytest.fixture(scope="module")
def float_run(module_tmp_path) -> str:
    return make_tiny_run(module_tmp_path / "runs" / "float", seed=0)


@pytest.fixture(scope="module")
def float_export(float_run, module_tmp_path) -> str:
    out = str(module_tmp_path / "exports" / "float")
    export.main(["--run", float_run, "--export_dir", out])
    return out


@pytest.fixture(scope="module")
def keras_serving(float_run):
    run = runs.open_run(float_run)
    return serving.build_serving_model(run, runs.load_model(run))


def assert_roughly_equal(rounded: np.ndarray, exact: np.ndarray) -> None:
    """A rounded model's scores (int8 weights, bfloat16): correlated with the exact ones, close on average."""
    assert np.corrcoef(rounded.ravel(), exact.ravel())[0, 1] >= ROUNDED_MIN_CORR
    assert np.abs(rounded - exact).mean() <= ROUNDED_MAX_MEAN_DIFF


def embeddings_to_scores(trained: keras.Model, embeddings: np.ndarray) -> np.ndarray:
    """The head after its Dense(dense_units): BatchNormalization (inference) -> Dense(C, sigmoid), in numpy."""
    norm = [layer for layer in trained.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in norm.get_weights())
    kernel, bias = (np.asarray(w, np.float64) for w in trained.get_layer("scores").get_weights())
    x = (embeddings - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta
    return 1.0 / (1.0 + np.exp(-(x @ kernel + bias)))


def test_windows_signature_equals_the_keras_serving_model(float_run, float_export, keras_serving, waves):
    windows = cut_windows(waves[0], 96000, 48000)  # [11, 96000]
    expected = keras_serving.predict_on_batch(windows)
    assert expected.std() > 1e-3  # scores that differ between windows: the comparison means something
    out = tf.saved_model.load(os.path.join(float_export, "saved_model")).signatures["windows"](
        waveform=tf.constant(windows))
    np.testing.assert_allclose(out["scores"].numpy(), expected, atol=FLOAT_ATOL)
    embeddings = out["embeddings"].numpy()
    assert embeddings.shape == (11, 64) and (embeddings >= 0).all()  # the relu Dense(dense_units=64)
    trained = runs.load_model(runs.open_run(float_run))
    np.testing.assert_allclose(embeddings_to_scores(trained, embeddings), expected, atol=FLOAT_ATOL)


def test_recording_signature_cuts_windows_by_the_core_rule(float_export, keras_serving, waves):
    signature = tf.saved_model.load(os.path.join(float_export, "saved_model")).signatures["serving_default"]
    for wave in waves:  # 12 s, 4.3 s (last window ends at the end), 0.5 s (zero-padded), exactly one window
        out = signature(waveform=tf.constant(wave))
        starts = window_starts(len(wave), 96000, 48000)
        np.testing.assert_array_equal(out["starts"].numpy(), starts)
        assert out["starts"].dtype == tf.int64
        expected = keras_serving.predict_on_batch(cut_windows(wave, 96000, 48000))
        np.testing.assert_allclose(out["scores"].numpy(), expected, atol=FLOAT_ATOL)
        assert out["embeddings"].shape == (len(starts), 64)
    assert [len(window_starts(len(w), 96000, 48000)) for w in waves] == [11, 4, 1, 1]


def test_recording_signature_batches_give_the_same_windows(float_run, waves):
    # Windows 11 scored 4 at a time (3 batches, the last partial) equal one batch of all of them.
    run = runs.open_run(float_run)
    model = export_model.window_model(run, runs.load_model(run))
    small = export_model.Ensemble([model], 96000, 48000, batch_size=4).score_recording(tf.constant(waves[0]))
    large = export_model.Ensemble([model], 96000, 48000, batch_size=64).score_recording(tf.constant(waves[0]))
    np.testing.assert_allclose(small["scores"].numpy(), large["scores"].numpy(), atol=FLOAT_ATOL)
    np.testing.assert_array_equal(small["starts"].numpy(), large["starts"].numpy())


@pytest.mark.parametrize("name", ["model.tflite", "model_int8.tflite"])
def test_tflite_scores_equal_keras_within_tolerance(float_export, keras_serving, waves, name):
    path = os.path.join(float_export, name)
    content = open(path, "rb").read()
    assert b"Flex" not in content  # builtin ops only: no select-TF (Flex) custom op in the flatbuffer
    windows = np.concatenate([cut_windows(w, 96000, 48000) for w in waves[1:3]])  # 5 windows
    it = tflite_export.interpreter(path)
    runner = it.get_signature_runner("serving_default")
    details = runner.get_input_details()["waveform"]
    assert details["shape"].tolist() == [1, 96000]  # an edge recorder's one window ...
    assert details["shape_signature"].tolist() == [-1, 96000]  # ... but any batch
    scores, embeddings = tflite_export.run_tflite(it, windows)
    expected = keras_serving.predict_on_batch(windows)
    if name == "model.tflite":
        np.testing.assert_allclose(scores, expected, atol=FLOAT_ATOL)
    else:
        assert_roughly_equal(scores, expected)
    assert embeddings.shape == (5, 64)
    # Batches of 2 (the last one partial, so the input is resized twice) score each window as one at a time.
    batched, batched_embeddings = tflite_export.run_tflite(it, windows, batch_size=2)
    np.testing.assert_allclose(batched, scores, atol=1e-5)
    np.testing.assert_allclose(batched_embeddings, embeddings, atol=1e-4)
    # Two single-threaded interpreters on shares of 3 and 2 windows: the same rows in the same order.
    parallel = tflite_export.ParallelInterpreters(path, workers=2, batch_size=2)
    parallel_scores, parallel_embeddings = parallel(windows)
    parallel.close()
    np.testing.assert_allclose(parallel_scores, scores, atol=1e-5)
    np.testing.assert_allclose(parallel_embeddings, embeddings, atol=1e-4)


def test_int8_file_is_smaller(float_export):
    sizes = {n: os.path.getsize(os.path.join(float_export, n)) for n in ("model.tflite", "model_int8.tflite")}
    assert sizes["model_int8.tflite"] < 0.4 * sizes["model.tflite"]  # int8 weights: about a quarter


def test_metadata_describes_the_export(float_run, float_export):
    meta = layout.read_metadata(float_export)
    config = json.loads(open(os.path.join(float_run, "config.json")).read())
    assert meta.species == tuple(f"s{k}" for k in range(24))
    assert (meta.sample_rate, meta.window_samples, meta.stride_samples) == (48000, 96000, default_stride(96000))
    assert (meta.embedding_size, meta.num_models, meta.preset) == (64, 1, "tiny")
    assert meta.runs == (float_run,) and dict(meta.config) == config
    assert sorted(os.listdir(float_export)) == ["metadata.json", "model.tflite", "model_int8.tflite", "saved_model"]


def test_mixed_precision_run_exports_in_float32(tmp_path, waves):
    run_dir = make_tiny_run(tmp_path / "mixed", mixed_precision=True, seed=1)
    run = runs.open_run(run_dir)
    trained = runs.load_model(run)
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in trained.layers)
    out_dir = str(tmp_path / "export")
    # --skip_tflite: the TFLite files are converted from the same float32 graph (tested on the float run).
    export.main(["--run", run_dir, "--export_dir", out_dir, "--stride_seconds", "0.75", "--skip_tflite"])
    assert layout.read_metadata(out_dir).stride_samples == 36000
    windows = cut_windows(waves[0], 96000, 36000)[:6]
    scores = tf.saved_model.load(os.path.join(out_dir, "saved_model")).signatures["windows"](
        waveform=tf.constant(windows))["scores"].numpy()
    as_trained = serving.build_serving_model(run, trained).predict_on_batch(windows)  # bfloat16 inside
    in_float32 = serving.build_serving_model(run, export_model.float32_copy(trained)).predict_on_batch(windows)
    assert as_trained.std() > 1e-3
    np.testing.assert_allclose(scores, in_float32, atol=FLOAT_ATOL)
    assert_roughly_equal(as_trained, scores)
    assert sorted(os.listdir(out_dir)) == ["metadata.json", "saved_model"]


def test_runs_root_exports_the_ensemble(float_run, float_export, tmp_path, keras_serving, waves):
    root = tmp_path / "cv"
    shutil.copytree(float_run, root / "fold0")
    make_tiny_run(root / "fold1", seed=2)
    os.makedirs(root / "fold2")  # unfinished: no summary.json, left out
    out_dir = str(tmp_path / "export")
    os.makedirs(out_dir)
    open(os.path.join(out_dir, "model.tflite"), "w").write("an earlier export's file")
    export.main(["--run", str(root), "--export_dir", out_dir, "--skip_tflite", "--overwrite"])
    meta = layout.read_metadata(out_dir)
    assert (meta.num_models, meta.embedding_size) == (2, 128)
    assert meta.runs == (str(root / "fold0"), str(root / "fold1"))
    assert sorted(os.listdir(out_dir)) == ["metadata.json", "saved_model"]  # --overwrite replaced the old export
    windows = cut_windows(waves[3], 96000, 48000)
    second = runs.open_run(str(root / "fold1"))
    expected = (keras_serving.predict_on_batch(windows)
                + serving.build_serving_model(second, runs.load_model(second)).predict_on_batch(windows)) / 2
    out = tf.saved_model.load(os.path.join(out_dir, "saved_model")).signatures["windows"](waveform=tf.constant(windows))
    np.testing.assert_allclose(out["scores"].numpy(), expected, atol=FLOAT_ATOL)
    # Embeddings: fold0's 64 then fold1's 64; fold0's equal the single-run export's.
    alone = tf.saved_model.load(os.path.join(float_export, "saved_model")).signatures["windows"](
        waveform=tf.constant(windows))["embeddings"].numpy()
    assert out["embeddings"].shape == (1, 128)
    np.testing.assert_allclose(out["embeddings"].numpy()[:, :64], alone, rtol=1e-3, atol=1e-3)


def test_attention_head_run_exports_its_scores_and_time_averaged_embeddings(tmp_path, waves):
    # A run with the framewise head (trainer.model.heads): its custom layers reload from best.keras, its
    # embedding is the per-frame Dense(dense_units) averaged over time. --skip_tflite for the export's
    # time (the head adds only builtin TFLite ops: mean, max, softmax, sum).
    run_dir = make_tiny_run(tmp_path / "attention", seed=3, head="attention")
    out_dir = str(tmp_path / "export")
    export.main(["--run", run_dir, "--export_dir", out_dir, "--skip_tflite"])
    assert layout.read_metadata(out_dir).embedding_size == 64
    run = runs.open_run(run_dir)
    trained = runs.load_model(run)
    windows = cut_windows(waves[0], 96000, 48000)[:4]
    expected = serving.build_serving_model(run, trained).predict_on_batch(windows)
    assert expected.std() > 1e-3
    out = tf.saved_model.load(os.path.join(out_dir, "saved_model")).signatures["windows"](
        waveform=tf.constant(windows))
    np.testing.assert_allclose(out["scores"].numpy(), expected, atol=FLOAT_ATOL)
    frames = serving.build_serving_model(run, keras.Model(trained.input, trained.get_layer("frame_embedding").output))
    per_frame = np.asarray(frames(windows))  # [4, T', 64]
    assert per_frame.shape[1] > 1  # several time steps: the mean over time is not a copy
    np.testing.assert_allclose(out["embeddings"].numpy(), per_frame.mean(axis=1), atol=FLOAT_ATOL)


def test_user_errors(float_run, float_export, tmp_path, capsys):
    main = export.main
    fresh = str(tmp_path / "new")
    expect_user_error(capsys, main, ["--run", float_run, "--export_dir", float_export], "is not empty", "--overwrite")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    expect_user_error(capsys, main, ["--run", float_run, "--export_dir", str(other), "--overwrite"],
                      "notes.txt", "does not write")
    expect_user_error(capsys, main, ["--run", float_run, "--export_dir", os.path.join(float_run, "export")],
                      "inside the run dir")
    expect_user_error(capsys, main, ["--run", str(tmp_path / "nothing"), "--export_dir", fresh], "does not exist")
    expect_user_error(capsys, main, ["--run", str(tmp_path), "--export_dir", fresh], "no complete run dir")
    expect_user_error(capsys, main, ["--run", float_run, "--export_dir", fresh, "--stride_seconds", "3"],
                      "--stride_seconds 3", "at most the window")
    species = tmp_path / "species.txt"
    species.write_text("frog\ntoad\n")
    expect_user_error(capsys, main, ["--run", float_run, "--export_dir", fresh, "--species", str(species)],
                      "needs 24 distinct names", "found 2")
    root = tmp_path / "mismatch"
    shutil.copytree(float_run, root / "a")
    shutil.copytree(float_run, root / "b")
    config = json.loads((root / "b" / "config.json").read_text())
    config["window_seconds"] = 3.0
    (root / "b" / "config.json").write_text(json.dumps(config))
    expect_user_error(capsys, main, ["--run", str(root), "--export_dir", fresh], "same window")
    assert not os.path.exists(fresh)  # every refusal came before anything was written
