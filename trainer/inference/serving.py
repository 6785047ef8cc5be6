"""Serving model: raw waveforms in, species scores out, with the mel front end inside.

The trained model (best.keras) takes log-mel spectrograms; a deployed model should not need this
repository's mel code around it. `export_serving` wraps the run's LogMel layer (built from the run's
MelConfig, so it computes exactly trainer.features.mel.log_mel) and the trained model into one Keras model:

    waveform float32 [batch, window_samples] at the run's sample rate (48 kHz by default)
      -> LogMel  -> [batch, n_mels, frames, 1]
      -> best.keras -> scores [batch, num_classes]

and saves it as run_dir/serving.keras. Loading needs only Keras plus the project's registered layers
(trainer.features.mel's LogMel, trainer.model.network's FrequencyChannel, trainer.model.heads' pooling
layers), which `load_serving` imports.

    from trainer.training import runs; from trainer.inference import serving
    run = runs.open_run("runs/demo/fold0")
    path = serving.export_serving(run, runs.load_model(run))        # runs/demo/fold0/serving.keras
    model = serving.load_serving("runs/demo/fold0")
    scores = model.predict(windows)                                    # [batch, num_classes]
"""
from __future__ import annotations

from typing import Any

from core import fs
from core.errors import UserError
from trainer.features import mel
from trainer.training import run_layout as layout
from trainer.training.runs import Run

SERVING_MODEL = layout.SERVING_MODEL


def build_serving_model(run: Run, model: Any) -> Any:
    """keras.Model: float32 [batch, window_samples] waveforms -> [batch, num_classes] scores.

    `model` is the run's trained model (runs.load_model), shared, not copied.
    """
    import keras

    waveform = keras.Input(shape=(run.window_samples,), dtype="float32", name="waveform")
    features = mel.LogMel(run.config.mel, name="log_mel")(waveform)  # [batch, n_mels, frames, 1]
    scores = model(features)  # [batch, num_classes]
    return keras.Model(waveform, scores, name="serving")


def export_serving(run: Run, model: Any, overwrite: bool = False, serving: Any = None) -> str:
    """Writes run_dir/serving.keras unless an export newer than best.keras exists; returns its path.

    `serving` is build_serving_model(run, model) when the caller built it already. The age check
    guards against a best.keras replaced behind the export's back (e.g. copied in by hand);
    trainer.training.train removes serving.keras itself when it starts a run over.
    """
    path = run.path(SERVING_MODEL)
    stale = not fs.isfile(path) or fs.mtime_ns(path) < fs.mtime_ns(run.path(layout.BEST_MODEL))
    if overwrite or stale:
        tmp = run.path("serving.tmp.keras")
        (serving if serving is not None else build_serving_model(run, model)).save(tmp)
        fs.rename(tmp, path)  # a cut-off export never leaves a half-written serving.keras behind
    return path


def load_serving(run_dir: str) -> Any:
    """Loads run_dir/serving.keras (its custom layers: trainer.features.mel's LogMel, trainer.model.network's, registered here)."""
    import keras

    # Registers FrequencyChannel and the heads' layers (trainer.features.mel registers LogMel).
    from trainer.model import network as _layers  # noqa: F401

    path = layout.path(str(run_dir), SERVING_MODEL)
    if not fs.isfile(path):
        raise UserError(f"{path} not found; `make predict` exports it for each run")
    return keras.models.load_model(path, compile=False)
