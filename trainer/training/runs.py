"""Finding and loading finished training runs (the run dirs written by trainer.training.train).

A run dir is complete when summary.json exists (trainer.training.train writes it last); its model is
best.keras (input [batch, n_mels, frames, 1], output [batch, num_classes]) and its resolved
TrainConfig is config.json (file names: trainer.training.run_layout). Run dirs may be local or gs:// (core.fs).

    from trainer.training import runs
    run_dirs = runs.complete_runs_under("runs/demo")    # every complete sub-dir (summary.json) of the root
    run = runs.open_run(run_dirs[0])                    # Run(run_dir, config); checks files
    model = runs.load_model(run)                        # best.keras
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

from core import fs
from core.errors import UserError
from core.manifest import Manifest
from trainer.data import discovery
from trainer.recipe.config import TrainConfig, load_run_config
from trainer.training import run_layout as layout

log = logging.getLogger("trainer.training.runs")

is_complete = layout.is_complete


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run dir (local path or URL) and its resolved config (the model is loaded separately)."""

    run_dir: str
    config: TrainConfig

    @property
    def window_samples(self) -> int:
        """Training window length in samples (what one window of inference holds)."""
        return discovery.window_samples(self.config)

    def path(self, name: str) -> str:
        """run_dir/name (names from trainer.training.run_layout)."""
        return layout.path(self.run_dir, name)


def complete_runs_under(runs_root: str) -> list[str]:
    """Every direct sub-dir of `runs_root` holding a complete run, sorted by name."""
    root = str(runs_root)
    if not fs.isdir(root):
        raise UserError(f"runs root {root} does not exist; train first (`make cv` or `make train`)")
    subdirs = fs.subdirs(root)
    found = [d for d in subdirs if is_complete(d)]
    if not found:
        raise UserError(f"no complete run dir (one with {layout.SUMMARY}) under {root}; train first (`make cv`)")
    unfinished = [fs.basename(d) for d in subdirs if layout.has_config(d) and not is_complete(d)]
    if unfinished:
        # Not an error (a finished subset can be ensembled), but never silent.
        log.warning("left out of the ensemble, training not finished: %s", ", ".join(unfinished))
    return found


def open_run(run_dir: str) -> Run:
    """A finished run's dir and config.json, without loading its model (cheap: checks come first)."""
    run_dir = str(run_dir)
    for name in (layout.SUMMARY, layout.BEST_MODEL, layout.CONFIG):
        if not fs.isfile(layout.path(run_dir, name)):
            raise UserError(
                f"run dir {run_dir} has no {name}: not a finished training run "
                f"(train or resume it with `make train RUN_DIR={run_dir}`)"
            )
    return Run(run_dir, load_run_config(run_dir))


def load_model(run: Run) -> Any:
    """The run's best.keras ([batch, n_mels, frames, 1] -> [batch, num_classes]), checked against its config."""
    import keras

    from trainer.model import network as _layers  # noqa: F401  registers the custom layers best.keras holds

    path = run.path(layout.BEST_MODEL)
    try:
        model = keras.models.load_model(path, compile=False)
    except (ValueError, OSError, TypeError, KeyError) as e:  # TypeError: a config naming a refused object
        raise UserError(f"cannot load {path}: {e}") from e
    expected, got = discovery.input_shape(run.config), tuple(model.input_shape[1:])
    if got != expected:
        raise UserError(
            f"{path} takes input {got} but config.json implies {expected} (n_mels, frames of a "
            f"{run.config.window_seconds} s window, 1); the run dir is inconsistent"
        )
    return model


def check_ensemble(runs: Sequence[Run]) -> int:
    """Runs can be averaged when they score the same species; returns that num_classes."""
    by_classes: dict[int, list[str]] = {}
    for run in runs:
        by_classes.setdefault(int(run.config.num_classes), []).append(run.run_dir)
    if len(by_classes) != 1:
        detail = "; ".join(f"{n} classes: {', '.join(dirs)}" for n, dirs in sorted(by_classes.items()))
        raise UserError(f"runs with different num_classes cannot be ensembled ({detail})")
    return next(iter(by_classes))


def check_against_manifest(run: Run, manifest: Manifest, shards_dir: str) -> None:
    """The run must read audio at the shards' sample rate and score the shards' species."""
    rate, classes = manifest.sample_rate, manifest.num_classes
    if int(run.config.mel.sample_rate) != rate:
        raise UserError(
            f"{run.run_dir} was trained at {run.config.mel.sample_rate} Hz but {shards_dir} holds "
            f"{rate} Hz audio; use shards made at the run's sample rate"
        )
    if int(run.config.num_classes) != classes:
        raise UserError(
            f"{run.run_dir} scores {run.config.num_classes} classes but {shards_dir} has {classes}"
        )
