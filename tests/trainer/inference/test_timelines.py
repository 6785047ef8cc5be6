"""trainer.inference.timelines: the time axis is the windows' own, and `predict --plot_dir` plots what it scored.

Window positions are checked against trainer.data.windows.cut_windows (the rule trainer.inference.predict cuts by)
on a ramp waveform, whose sample values are their own indices. The end-to-end test builds a real
(untrained) Keras model into a run dir, so no training is needed: predict's submission row of a
recording must be the max over the plotted window scores, and predict's progress line is in its log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from core.windows import cut_windows
from trainer.data import discovery
from trainer.features import mel
from trainer.inference import predict, timelines
from trainer.recipe import config as config_lib
from trainer.training import runs


@pytest.mark.parametrize("num_samples, window, stride", [
    (60_000, 10_000, 5_000),   # windows tile the recording exactly
    (63_217, 10_000, 4_000),   # the last window is moved to end at the recording's end
    (10_000, 10_000, 5_000),   # one window
])
def test_window_centres_are_the_middles_of_predicts_windows(num_samples, window, stride):
    rate = 1000
    centres = timelines.window_centre_seconds(num_samples, window, stride, rate)
    cut = cut_windows(np.arange(num_samples, dtype=np.float32), window, stride)  # [W, window], value = index
    assert len(centres) == len(cut)
    # A window's middle sample (index window // 2 of an even window) is its centre in samples.
    np.testing.assert_array_equal(cut[:, window // 2], centres * rate)
    assert centres[-1] == pytest.approx((num_samples - window / 2) / rate)


def test_short_recording_has_one_window_centred_on_the_padded_window():
    centres = timelines.window_centre_seconds(3_000, 10_000, 5_000, 1000)
    np.testing.assert_array_equal(centres, [5.0])


def test_timeline_puts_each_score_at_its_windows_centre(tmp_path):
    mel_cfg = mel.MelConfig(sample_rate=16000, fmax=8000.0, n_fft=512, hop_length=256, n_mels=16)
    n, window, stride = 16000 * 5 + 123, 16000, 8000
    waveform = np.arange(n, dtype=np.float32) / n  # a ramp: a window's mean tells where it was cut

    def score(windows: np.ndarray) -> np.ndarray:  # [B, window] -> [B, 3]: the mean sample index, three times
        return np.repeat(windows.mean(axis=1, keepdims=True) * n, 3, axis=1)

    scores = timelines.window_scores(waveform, score, window, stride, batch_size=2)
    tl = timelines.build_timeline("r", waveform, mel_cfg, window, stride, scores, true_species=(2,))
    # Mean index of window [s, s + w) is s + (w - 1) / 2 = centre - 1/2 (in samples).
    np.testing.assert_allclose(tl.scores[:, 0], tl.centres * 16000 - 0.5, rtol=1e-5)
    assert tl.image.shape == (16, mel.num_frames(n, mel_cfg))
    assert tl.duration == pytest.approx(n / 16000)
    assert timelines.species_to_show(tl, top_k=1) == [(0, False), (2, True)]
    path = str(tmp_path / "plots" / "r.png")
    timelines.plot_timeline(tl, path)
    assert open(path, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_selection_is_a_count_or_known_ids():
    assert timelines.parse_selection("3") == 3
    assert timelines.parse_selection("a, b") == ("a", "b")
    assert timelines.select_ids(["a", "b", "c"], 2) == ["a", "b"]
    assert timelines.select_ids(["a", "b", "c"], ("c", "a")) == ["c", "a"]
    with pytest.raises(UserError, match="not in sample_submission.csv"):
        timelines.select_ids(["a"], ("zz",))
    with pytest.raises(UserError):
        timelines.parse_selection("0")


@pytest.fixture(scope="module")
def untrained_run(module_tmp_path) -> str:
    """A run dir trainer.training.runs accepts: the tiny preset's real model with its initial weights."""
    from trainer.model.network import build_model

    cfg = config_lib.apply_overrides(config_lib.preset_config("tiny"), {"band_norm": False, "verbose": 0})
    run_dir = module_tmp_path / "run"
    run_dir.mkdir()
    build_model(cfg, discovery.input_shape(cfg)).save(run_dir / "best.keras")
    config_lib.save_config(cfg, str(run_dir / "config.json"))
    (run_dir / "summary.json").write_text(json.dumps({"note": "built by the test, not trained"}))
    return str(run_dir)


def test_predict_plot_dir_plots_the_scored_windows_and_logs_progress(untrained_run, tiny_shards, tmp_path, capsys):
    out, plot_dir = tmp_path / "sub.csv", tmp_path / "timelines"
    predict.main(["--run_dir", untrained_run, "--shards_dir", tiny_shards, "--output", str(out),
                  "--plot_dir", str(plot_dir), "--plot_recordings", "2"])
    log = capsys.readouterr().out
    sample = pd.read_csv(f"{tiny_shards}/sample_submission.csv", dtype={"recording_id": str})
    expected_ids = sample["recording_id"].tolist()[:2]
    assert sorted(p.name for p in plot_dir.iterdir()) == sorted(f"{r}.png" for r in expected_ids)
    # predict's progress line over the test recordings (the final one is always printed).
    total = len(sample)
    assert f"predicting with {os.path.basename(str(untrained_run))}: {total}/{total} recordings" in log

    # The plotted windows are the ones the submission scored: its row is their max.
    submitted = pd.read_csv(out, dtype={"recording_id": str}).set_index("recording_id")
    scorers = [predict.Scorer.load(runs.open_run(untrained_run), predict.PredictConfig())]
    result = timelines.write_timelines(str(tmp_path / "again"), scorers, tiny_shards, tuple(expected_ids))
    for tl in result.values():
        np.testing.assert_allclose(tl.scores.max(axis=0), submitted.loc[tl.recording_id].to_numpy(), atol=1e-5)
        assert tl.true_species is not None  # the demo shards hold test_truth.csv


def test_unknown_plot_recording_fails_before_any_inference(untrained_run, tiny_shards, tmp_path):
    out = tmp_path / "sub.csv"
    with pytest.raises(UserError, match="not in sample_submission.csv"):
        predict.main(["--run_dir", untrained_run, "--shards_dir", tiny_shards, "--output", str(out),
                      "--plot_dir", str(tmp_path / "plots"), "--plot_recordings", "no_such_recording"])
    assert not out.exists() and not (tmp_path / "plots").exists()


def test_predict_and_load_serving_work_in_a_fresh_interpreter(untrained_run, tiny_shards, tmp_path):
    """A new process has imported none of the project's custom layers: loading must register them itself."""
    out = tmp_path / "fresh.csv"
    done = subprocess.run([sys.executable, "-m", "trainer.inference.predict", "--run_dir", untrained_run, "--shards_dir",
                           tiny_shards, "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(pd.read_csv(out)) == len(pd.read_csv(f"{tiny_shards}/sample_submission.csv"))
    code = ("import sys; from trainer.inference import serving; m = serving.load_serving(sys.argv[1]); "
            "print(m.output_shape)")
    done = subprocess.run([sys.executable, "-c", code, untrained_run], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("24)")


def test_a_plot_dir_that_is_a_file_is_refused_before_inference(untrained_run, tiny_shards, tmp_path):
    blocker = tmp_path / "plots"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="--plot_dir .* is a file"):
        predict.main(["--run_dir", untrained_run, "--shards_dir", tiny_shards, "--output", str(tmp_path / "s.csv"),
                      "--plot_dir", str(blocker)])
    assert not (tmp_path / "s.csv").exists()
