"""Exports a finished run, or the CV ensemble under a runs root, as a deployable model dir.

EXPORT gets what core.export_layout names (its docstring is the contract the detection job reads):
a SavedModel with the signatures "serving_default" (one recording of any length, windows cut inside
by core.windows' rule) and "windows" ([B, window_samples] waveforms), model.tflite and
model_int8.tflite (one window; trainer.inference.tflite_export), and metadata.json (species,
sample rate, window, stride, preset, the runs and their resolved config). Every output is float32
waveform at the run's sample rate in, scores and embeddings (the head's penultimate vector) out,
the run's log-mel front end inside. Several runs (a runs root) are one model: scores averaged,
embeddings concatenated. A mixed-precision run exports computing in float32 (export_model).

Everything is built in a local temporary dir, then copied into EXPORT (local or gs://),
metadata.json last: a cut-off export has no metadata.json and reads as incomplete. EXPORT must be
empty or absent; --overwrite replaces an earlier export (a dir holding only export files).

Usage:

    python -m trainer.inference.export --run runs/demo/fold0 --export_dir exports/demo
    python -m trainer.inference.export --run runs/demo --export_dir exports/demo_cv   # every complete run under it
        [--stride_seconds 1.5] [--batch_size 16] [--species species.txt] [--skip_tflite] [--overwrite]
    make export RUN=runs/demo/fold0 EXPORT=exports/demo [ARGS='--stride_seconds 1.5']
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Any, Sequence

from core import checks, fs, outputs
from core import export_layout as layout
from core.errors import UserError, run_main
from core.windows import default_stride, seconds_to_samples
from trainer.recipe.config import config_to_dict
from trainer.training import runs

EXPORT_NAMES = frozenset({layout.METADATA, layout.SAVED_MODEL, layout.TFLITE_FLOAT, layout.TFLITE_INT8})
DEFAULT_BATCH_SIZE = 16  # windows per model call in "serving_default" (a 10 s window is 1.9 MB of float32)


def run_dirs_of(path: str) -> list[str]:
    """[path] when `path` is a complete run dir, else every complete run dir directly under it."""
    path = str(path)
    if runs.is_complete(path):
        return [path]
    if not fs.isdir(path):
        raise UserError(f"--run {path} does not exist; give a run dir or a runs root (`make train` / `make cv`)")
    return runs.complete_runs_under(path)


def check_export_dir(export_dir: str, overwrite: bool) -> list[str]:
    """Checks EXPORT may be written; returns the entries an --overwrite replaces (before any model loads)."""
    checks.output_dir("--export_dir", export_dir)
    outputs.refuse_inside("--export_dir", export_dir)  # not into (or over) a shards or run dir
    names = fs.listdir(export_dir) if fs.isdir(export_dir) else []
    if not names:
        return []
    if not overwrite:
        raise UserError(f"--export_dir {export_dir} is not empty ({', '.join(names[:5])}); choose an empty or new "
                        f"dir, or pass --overwrite to replace an earlier export")
    others = sorted(set(names) - EXPORT_NAMES)
    if others:
        raise UserError(f"--export_dir {export_dir} holds {', '.join(others[:5])}, which `make export` does not "
                        f"write; --overwrite replaces only an earlier export: choose another dir")
    return [fs.join(export_dir, n) for n in names]


def check_runs(loaded: Sequence[runs.Run]) -> None:
    """One exported model has one sample rate and window: the runs must agree on both (and on the species)."""
    runs.check_ensemble(loaded)
    first = loaded[0]
    for run in loaded[1:]:
        if (run.config.mel.sample_rate, run.window_samples) != (first.config.mel.sample_rate, first.window_samples):
            raise UserError(
                f"{run.run_dir} scores {run.window_samples} samples at {run.config.mel.sample_rate} Hz but "
                f"{first.run_dir} {first.window_samples} at {first.config.mel.sample_rate} Hz; runs exported together "
                f"need the same window and sample rate")


def stride_samples(run: runs.Run, stride_seconds: float | None) -> int:
    if stride_seconds is None:
        return default_stride(run.window_samples)
    stride = seconds_to_samples(stride_seconds, run.config.mel.sample_rate)
    if not 0 < stride <= run.window_samples:
        raise UserError(f"--stride_seconds {stride_seconds} must be > 0 and at most the window of {run.run_dir} "
                        f"({run.config.window_seconds} s)")
    return stride


def read_species(path: str | None, num_classes: int) -> tuple[str, ...]:
    """Names of the score columns: one per line of `path`, else the submission's s0..s{C-1}."""
    if not path:
        return tuple(f"s{k}" for k in range(num_classes))
    checks.input_file("--species", path)
    names = tuple(line.strip() for line in fs.read_text(path).splitlines() if line.strip())
    if len(names) != num_classes or len(set(names)) != len(names):
        raise UserError(f"--species {path}: needs {num_classes} distinct names, one per line (the model scores "
                        f"{num_classes} species), found {len(names)} ({len(set(names))} distinct)")
    return names


def resolved_config(loaded: Sequence[runs.Run]) -> dict[str, Any]:
    """The runs' shared resolved TrainConfig; per run (by dir) when they differ."""
    configs = [config_to_dict(run.config) for run in loaded]
    if all(c == configs[0] for c in configs):
        return configs[0]
    return {"per_run": {run.run_dir: c for run, c in zip(loaded, configs)}}


def _copy_tree(src: str, dst: str) -> None:
    """Every file under local `src` to `dst` (local or gs://) through core.fs."""
    for directory, _, names in os.walk(src):
        rel = os.path.relpath(directory, src)
        target = dst if rel == "." else fs.join(dst, *rel.split(os.sep))
        fs.makedirs(target)
        for name in names:
            fs.copy(os.path.join(directory, name), fs.join(target, name))


def export(run_dirs: Sequence[str], export_dir: str, stride_seconds: float | None = None,
           batch_size: int = DEFAULT_BATCH_SIZE, species_file: str | None = None, tflite: bool = True,
           overwrite: bool = False) -> layout.ExportMetadata:
    """Writes EXPORT for `run_dirs` (ensembled when several); returns its metadata."""
    import keras

    from trainer.inference import export_model, tflite_export

    export_dir = str(export_dir)
    if batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {batch_size}")
    replaced = check_export_dir(export_dir, overwrite)
    loaded = [runs.open_run(d) for d in run_dirs]  # configs only: every check before a model loads
    check_runs(loaded)
    first = loaded[0]
    stride = stride_samples(first, stride_seconds)
    species = read_species(species_file, int(first.config.num_classes))

    print(f"exporting {', '.join(r.run_dir for r in loaded)} to {export_dir}")
    models = [export_model.window_model(run, runs.load_model(run)) for run in loaded]
    ensemble = export_model.Ensemble(models, first.window_samples, stride, batch_size)
    meta = layout.ExportMetadata(
        species=species, sample_rate=int(first.config.mel.sample_rate), window_samples=first.window_samples,
        stride_samples=stride, embedding_size=ensemble.embedding_size, num_models=len(models),
        preset=first.config.from_preset, runs=tuple(r.run_dir for r in loaded), config=resolved_config(loaded))

    staging = tempfile.mkdtemp(prefix="export-")
    try:
        archive = keras.export.ExportArchive()
        for model in models:
            archive.track(model)
        archive.add_endpoint(layout.RECORDING_SIGNATURE, ensemble.score_recording,
                             input_signature=[export_model.recording_signature()])
        archive.add_endpoint(layout.WINDOWS_SIGNATURE, ensemble.score_windows,
                             input_signature=[export_model.window_signature(None, ensemble.window)])
        archive.write_out(os.path.join(staging, layout.SAVED_MODEL), verbose=False)
        print(f"saved the SavedModel ({layout.RECORDING_SIGNATURE!r}, {layout.WINDOWS_SIGNATURE!r})")
        if tflite:
            for name, content in zip((layout.TFLITE_FLOAT, layout.TFLITE_INT8),
                                     tflite_export.convert(ensemble, models, variants=(False, True))):
                with open(os.path.join(staging, name), "wb") as f:
                    f.write(content)
                print(f"converted {name} ({len(content) / 1e6:.1f} MB)")
        fs.remove(layout.path(export_dir, layout.METADATA))  # first: a half-replaced export never reads as complete
        fs.remove_all(replaced)
        _copy_tree(staging, export_dir)
        layout.write_metadata(export_dir, meta)  # last: its presence marks a complete export
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {export_dir}: {meta.num_models} model(s), {meta.num_classes} species, window "
          f"{meta.window_samples} samples at {meta.sample_rate} Hz, stride {meta.stride_samples}, "
          f"embeddings of {meta.embedding_size}")
    return meta


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checks.ArgumentParser(prog="python -m trainer.inference.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished run dir, or a runs root: every complete run "
                        "dir under it, ensembled (the CV folds)")
    parser.add_argument("--export_dir", required=True, help="dir to write (local or gs://), empty or new")
    parser.add_argument("--stride_seconds", type=float, default=None,
                        help="stride of the recording signature; default half a window")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="windows per model call inside the recording signature")
    parser.add_argument("--species", help="file with the species names, one per line in score order "
                        "(default s0..s{C-1}, the submission's columns)")
    parser.add_argument("--skip_tflite", action="store_true", help="write the SavedModel and metadata only")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --export_dir")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    checks.number("--stride_seconds", args.stride_seconds, 0, low_open=True)
    return args


def main(argv: Sequence[str] | None = None) -> layout.ExportMetadata:
    args = parse_args(argv)
    return export(run_dirs_of(args.run), args.export_dir, args.stride_seconds, args.batch_size, args.species,
                  tflite=not args.skip_tflite, overwrite=args.overwrite)


if __name__ == "__main__":
    run_main(main)
