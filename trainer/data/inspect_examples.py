"""See what the model is fed: a grid of training examples with their tp and fp boxes.

The examples are the trainer's own (trainer.data.inputs): the first N draws of the training stream of
fold K (tp slices, and fp/background slices at the config's negative_fraction), each cropped to the
training window with the trainer's seeded crop, augmented (unless --no-augmentation) and turned into
the log-mel the model reads. Over each image go the slice's boxes that overlap the window, in time x
mel-band coordinates: tp boxes in one colour, fp boxes in another. Each panel is titled with the
recording id, slice kind and the species of its boxes. With --unaugmented_beside every example is
shown again without augmentation (the same window) to its right. Batch-level mixup is not shown.

The config is a run's (--run_dir: its config.json) or a preset/--config, with any training flag on
top (--augment.noise_p 1, --mel.n_mels 64, ...).

Usage:

    python -m trainer.data.inspect_examples --shards_dir data/shards/demo [--fold 0] [--n 16] [--run_dir runs/demo/fold0] \
        [--preset cpu] [--no-augmentation] [--unaugmented_beside] [--out_dir runs/demo/inspect]
    make inspect [SHARDS=dir] [FOLD=0] [N=16] [ARGS="--unaugmented_beside"]   # -> runs/<shards>/inspect/examples.png

    from trainer.data import inspect_examples
    examples = inspect_examples.draw_examples(files_by_kind, cfg, n=4, augmented=False)
    examples[0].image, inspect_examples.box_pixels(examples[0].boxes[0], cfg.mel)   # [n_mels, frames], pixel box
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from core import checks, fs, outputs
from core.errors import run_main
from trainer.data import discovery, records
from trainer.features.mel import MelConfig
from trainer.pictures import plots
from trainer.recipe import config as config_lib
from trainer.recipe.config import TrainConfig

EXAMPLES_PNG = "examples.png"
TP_COLOUR, FP_COLOUR = "#00e5ff", "#ff3d00"  # named in the picture's title as below
COLOUR_NAMES = {TP_COLOUR: "cyan", FP_COLOUR: "red"}
_BOX_KEYS = ("species_id", "t_min", "t_max", "f_min", "f_max", "is_tp")


@dataclasses.dataclass(frozen=True)
class Box:
    """One box of a slice, its times relative to the window's first sample (seconds), frequencies in Hz."""

    species_id: int
    is_tp: bool
    t_min: float
    t_max: float
    f_min: float
    f_max: float


@dataclasses.dataclass(frozen=True)
class Example:
    """One drawn training element: the model input and what the slice says is in it."""

    recording_id: str
    kind: str
    window_start: float  # seconds from the recording's start
    image: np.ndarray  # float32 [n_mels, frames]: the model input as fed (augmented or not)
    plain: np.ndarray | None  # the same window without augmentation, when asked for
    boxes: tuple[Box, ...]  # those overlapping the window

    def species(self, tp: bool) -> list[int]:
        return sorted({b.species_id for b in self.boxes if b.is_tp == tp})


# ---- coordinates ----

def frame_of(seconds: float | np.ndarray, mel_cfg: MelConfig) -> float | np.ndarray:
    """Time from the window's start -> fractional frame index (frame j is centred on sample j * hop)."""
    return np.asarray(seconds, np.float64) * mel_cfg.sample_rate / mel_cfg.hop_length


def mel_bin_of(hz: float | np.ndarray, mel_cfg: MelConfig) -> float | np.ndarray:
    """Frequency -> fractional mel-band index; band k peaks at the (k+1)-th of n_mels + 2 mel points
    spaced evenly on librosa's (Slaney) mel scale from fmin to fmax, as trainer.features.mel's filters do."""
    import librosa

    low, high = librosa.hz_to_mel([mel_cfg.fmin, mel_cfg.fmax])
    step = (high - low) / (mel_cfg.n_mels + 1)
    return (librosa.hz_to_mel(np.asarray(hz, np.float64)) - low) / step - 1.0


def band_centres_hz(mel_cfg: MelConfig) -> np.ndarray:
    """Centre frequency of each mel band: float64 [n_mels]."""
    import librosa

    return librosa.mel_frequencies(mel_cfg.n_mels + 2, fmin=mel_cfg.fmin, fmax=mel_cfg.fmax)[1:-1]


def box_pixels(box: Box, mel_cfg: MelConfig, num_frames: int) -> tuple[float, float, float, float]:
    """(frame_lo, frame_hi, band_lo, band_hi): the box's region of the [n_mels, frames] image, clipped to it.

    Fractional pixel coordinates, pixel centres at integers, edges at +-0.5; image[b, f] lies in
    the box when frame_lo <= f <= frame_hi and band_lo <= b <= band_hi.
    """
    f_lo, f_hi = (float(v) for v in frame_of([box.t_min, box.t_max], mel_cfg))
    b_lo, b_hi = (float(v) for v in mel_bin_of([box.f_min, box.f_max], mel_cfg))
    clip_f = lambda v: min(max(v, -0.5), num_frames - 0.5)  # noqa: E731
    clip_b = lambda v: min(max(v, -0.5), mel_cfg.n_mels - 0.5)  # noqa: E731
    return clip_f(f_lo), clip_f(f_hi), clip_b(b_lo), clip_b(b_hi)


def window_boxes(boxes: Mapping[str, np.ndarray], window_start: float, window_seconds: float) -> tuple[Box, ...]:
    """The boxes (boxes/* arrays, times from the slice start) overlapping [window_start, + window_seconds),
    their times shifted to the window's start."""
    out = []
    for s, t0, t1, f0, f1, tp in zip(*(np.asarray(boxes[k]) for k in _BOX_KEYS)):
        if t1 > window_start and t0 < window_start + window_seconds:
            out.append(Box(int(s), bool(tp), float(t0) - window_start, float(t1) - window_start, float(f0), float(f1)))
    return tuple(out)


# ---- drawing examples from the trainer's stream ----

def draw_examples(files_by_kind: Mapping[str, Sequence[str]], cfg: TrainConfig, n: int, augmented: bool = True,
                  unaugmented_beside: bool = False, species_counts: Sequence[int] | None = None) -> list[Example]:
    """The first `n` elements of the training stream (trainer.data.inputs), as fed, with their boxes.

    species_counts: the manifest's tp slices per species, which cfg.class_balance > 0 needs."""
    import tensorflow as tf

    from trainer.data import inputs

    fed = inputs.train_element_fn(cfg, augmented)
    plain = inputs.train_element_fn(cfg, False) if augmented and unaugmented_beside else None
    spec = records.train_parse_spec(cfg.num_classes)
    box_spec = {f"boxes/{k}": spec[f"boxes/{k}"] for k in _BOX_KEYS}
    rate, window_seconds = float(cfg.mel.sample_rate), discovery.window_samples(cfg) / float(cfg.mel.sample_rate)
    examples = []
    draws = inputs.training_draws(files_by_kind, cfg, 0, species_counts=species_counts)
    for index, record in draws.take(n).enumerate():
        ex = fed(index, record)
        boxes = {k[len("boxes/"):]: tf.sparse.to_dense(v).numpy()
                 for k, v in tf.io.parse_single_example(record, box_spec).items()}
        start = int(ex["offset"]) / rate  # seconds from the slice's start
        examples.append(Example(
            recording_id=ex["recording_id"].numpy().decode(), kind=ex["kind"].numpy().decode(),
            window_start=int(ex["slice_start"]) / rate + start,
            image=ex["x"].numpy()[..., 0],  # [n_mels, frames, 1] -> [n_mels, frames]
            plain=None if plain is None else plain(index, record)["x"].numpy()[..., 0],
            boxes=window_boxes(boxes, start, window_seconds)))
    return examples


# ---- the picture ----

def _title(ex: Example) -> str:
    tp, fp = ex.species(True), ex.species(False)
    species = " ".join(filter(None, [f"tp {','.join(map(str, tp))}" if tp else "",
                                     f"fp {','.join(map(str, fp))}" if fp else ""])) or "no box"
    return f"{ex.recording_id} {ex.kind} @{ex.window_start:.1f}s\n{species}"


def draw_panel(ax: Any, image: np.ndarray, boxes: Sequence[Box], mel_cfg: MelConfig, title: str) -> None:
    """One log-mel image (time in seconds across, mel bands up, labelled in Hz) with its boxes."""
    from matplotlib.patches import Rectangle

    seconds_per_frame = mel_cfg.hop_length / mel_cfg.sample_rate
    frames = image.shape[1]
    ax.imshow(image, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
              extent=(-0.5 * seconds_per_frame, (frames - 0.5) * seconds_per_frame, -0.5, image.shape[0] - 0.5))
    for box in boxes:
        f_lo, f_hi, b_lo, b_hi = box_pixels(box, mel_cfg, frames)
        colour = TP_COLOUR if box.is_tp else FP_COLOUR
        ax.add_patch(Rectangle((f_lo * seconds_per_frame, b_lo), (f_hi - f_lo) * seconds_per_frame, b_hi - b_lo,
                               fill=False, edgecolor=colour, linewidth=1.5))
        ax.text(f_lo * seconds_per_frame, b_hi, str(box.species_id), color=colour, fontsize=7, va="bottom")
    centres = band_centres_hz(mel_cfg)
    ticks = np.linspace(0, mel_cfg.n_mels - 1, 4).round().astype(int)
    ax.set_yticks(ticks, [f"{centres[t] / 1000:.1f}k" for t in ticks])
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=7)


def plot_examples(examples: Sequence[Example], mel_cfg: MelConfig, path: str, augmented: bool,
                  dpi: int = 80) -> None:
    """The grid PNG: a panel per example (two side by side when the unaugmented copy is there)."""
    per_example = 2 if any(ex.plain is not None for ex in examples) else 1
    cols = max(1, min(len(examples), 4 // per_example))  # four panels a row
    rows = max(1, math.ceil(len(examples) / cols))
    fig = plots.new_figure(3.2 * cols * per_example, 2.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols * per_example, squeeze=False)).reshape(rows, cols * per_example)
    for ax in axes.flat:
        ax.axis("off")
    for i, ex in enumerate(examples):
        r, c = divmod(i, cols)
        ax = axes[r, c * per_example]
        ax.axis("on")
        draw_panel(ax, ex.image, ex.boxes, mel_cfg, _title(ex) + (" (augmented)" if augmented else ""))
        if ex.plain is not None:
            axes[r, c * per_example + 1].axis("on")
            draw_panel(axes[r, c * per_example + 1], ex.plain, ex.boxes, mel_cfg, _title(ex) + " (plain)")
    fig.suptitle(f"{len(examples)} training examples as fed (log-mel; tp boxes {COLOUR_NAMES[TP_COLOUR]}, "
                 f"fp boxes {COLOUR_NAMES[FP_COLOUR]}; "
                 f"x: seconds in the window, y: mel band in Hz)", fontsize=9)
    plots.save_png(fig, path, dpi)


# ---- command line ----

def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = checks.ArgumentParser(prog="python -m trainer.data.inspect_examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards_dir", required=True, help="shards dir of pipeline.shards")
    parser.add_argument("--fold", type=int, default=0, help="validation fold: examples come from the others")
    parser.add_argument("--n", type=int, default=16, help="examples to draw")
    parser.add_argument("--out_dir", default=None, help="default: runs/<shards dir name>/inspect")
    parser.add_argument("--run_dir", default=None, help="use this run's config.json (flags still apply on top)")
    parser.add_argument("--preset", default=config_lib.AUTO, choices=config_lib.PRESET_CHOICES,
                        help="without --run_dir, as trainer.training.train")
    parser.add_argument("--config", dest="config_file", help="JSON file of config overrides (without --run_dir)")
    parser.add_argument("--augmentation", action=argparse.BooleanOptionalAction, default=True,
                        help="show the examples augmented, as trained (default) or not")
    parser.add_argument("--unaugmented_beside", action="store_true",
                        help="show each example again without augmentation to its right")
    parser.add_argument("--dpi", type=int, default=80, help="resolution of the PNG (pixels per inch)")
    config_lib.add_config_flags(parser)
    args = parser.parse_args(argv)
    checks.number("--n", args.n, 1, 256)
    checks.number("--dpi", args.dpi, 20, 400)
    if args.run_dir and (args.config_file or args.preset != config_lib.AUTO):
        parser.error("--run_dir uses that run's config.json; drop --preset/--config (flags still apply on top)")
    if args.run_dir:
        cfg = config_lib.apply_overrides(config_lib.load_run_config(args.run_dir), config_lib.flag_overrides(args))
    else:
        cfg = config_lib.resolve_config(args.preset, args.config_file, args)
    return args, cfg


def main(argv: Sequence[str] | None = None) -> str:
    args, cfg = parse_args(argv)
    out_dir = args.out_dir or fs.join("runs", fs.basename(args.shards_dir), "inspect")
    checks.output_dir("--out_dir", out_dir)
    outputs.refuse_inside("--out_dir", out_dir)
    # The training files (every fold but --fold) by kind, found and checked as trainer.training.train does.
    fold_inputs = discovery.prepare_fold(args.shards_dir, args.fold, cfg)
    with discovery.naming_a_corrupt_shard_of(fold_inputs.train_files):
        examples = draw_examples(fold_inputs.train_files_by_kind, cfg, args.n, args.augmentation,
                                 args.unaugmented_beside, fold_inputs.manifest.species_examples())
    path = fs.join(out_dir, EXAMPLES_PNG)
    plot_examples(examples, cfg.mel, path, args.augmentation, args.dpi)
    print(f"wrote {path} ({len(examples)} examples of the training stream without fold {args.fold}, "
          f"{'augmented' if args.augmentation else 'not augmented'})")
    return path


if __name__ == "__main__":
    run_main(main)
