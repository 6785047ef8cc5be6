"""Serving model: raw waveforms in, species scores out, with the mel front end inside.

The trained model (best.keras) takes log-mel spectrograms; a deployed model should not need this
repository's mel code around it. `export_serving` wraps the run's LogMel layer (built from the run's
MelConfig, so it computes exactly trainer.mel.log_mel) and the trained model into one Keras model:

    waveform float32 [batch, window_samples] at the run's sample rate (48 kHz by default)
      -> LogMel  -> [batch, n_mels, frames, 1]
      -> best.keras -> scores [batch, num_classes]

and saves it as run_dir/serving.keras. Loading needs only Keras plus the registered LogMel layer
(`import trainer.mel`), which `load_serving` does.

    from trainer import runs, serving
    run = runs.open_run("runs/demo/fold0")
    path = serving.export_serving(run, runs.load_model(run))        # runs/demo/fold0/serving.keras
    model = serving.load_serving("runs/demo/fold0")
    scores = model.predict(windows)                                    # [batch, num_classes]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from trainer import mel
from trainer.runs import Run
from trainer.train import BEST_MODEL

SERVING_MODEL = "serving.keras"


def build_serving_model(run: Run, model: Any) -> Any:
    """keras.Model: float32 [batch, window_samples] waveforms -> [batch, num_classes] scores.

    `model` is the run's trained model (runs.load_model), shared, not copied.
    """
    import keras

    waveform = keras.Input(shape=(run.window_samples,), dtype="float32", name="waveform")
    features = mel.LogMel(run.config.mel, name="log_mel")(waveform)  # [batch, n_mels, frames, 1]
    scores = model(features)  # [batch, num_classes]
    return keras.Model(waveform, scores, name="serving")


def export_serving(run: Run, model: Any, overwrite: bool = False) -> Path:
    """Writes run_dir/serving.keras unless an export newer than best.keras exists; returns its path.

    The age check matters because retraining a run dir (trainer.train --overwrite) replaces
    best.keras but leaves other files alone.
    """
    path = run.run_dir / SERVING_MODEL
    stale = not path.is_file() or path.stat().st_mtime_ns < (run.run_dir / BEST_MODEL).stat().st_mtime_ns
    if overwrite or stale:
        tmp = path.with_name(path.stem + ".tmp.keras")
        build_serving_model(run, model).save(tmp)
        tmp.replace(path)  # a cut-off export never leaves a half-written serving.keras behind
    return path


def load_serving(run_dir: str | Path) -> Any:
    """Loads run_dir/serving.keras (the LogMel layer is registered by importing trainer.mel)."""
    import keras

    path = Path(run_dir) / SERVING_MODEL
    if not path.is_file():
        raise UserError(f"{path} not found; `make predict` exports it for each run")
    return keras.models.load_model(path, compile=False)
