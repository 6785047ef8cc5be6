"""Detections over time: a test recording's log-mel and, under it on the same time axis, window scores.

For each chosen test recording (the first N of sample_submission.csv, or given ids) one PNG: on top
the run's log-mel (trainer.features.mel.log_mel with the run's MelConfig) of the whole recording, below it
the score of each sliding window (the windows trainer.inference.predict scores: trainer.data.windows, the run's
window and stride) plotted at the window's centre, for the top-k species of the recording (by their
best window) and, when the shards hold test_truth.csv, the true species too, marked "true". Several
runs are averaged per window, as the submission averages them per recording.

    python -m trainer.inference.predict ... --plot_dir runs/demo/timelines [--plot_recordings 4 | id1,id2]
    make predict PLOTS=1                     # -> runs/<shards>/timelines/<recording_id>.png

    from trainer.inference import timelines
    centres = timelines.window_centre_seconds(num_samples, window, stride, sample_rate)   # [W] seconds
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from core import fs
from core import manifest as shards_layout
from core.errors import UserError
from core.manifest import Manifest
from core.windows import cut_windows, window_starts
from trainer.data import discovery, recordings
from trainer.features import mel
from trainer.inference import submission
from trainer.pictures import plots

Scorer = Callable[[np.ndarray], np.ndarray]  # float32 [B, window] -> float32 [B, C]
DEFAULT_RECORDINGS = "4"
TOP_K = 3


def window_centre_seconds(num_samples: int, window: int, stride: int, sample_rate: int) -> np.ndarray:
    """Centre of each inference window in seconds from the recording's start: float64 [num_windows]."""
    return (window_starts(num_samples, window, stride) + window / 2.0) / float(sample_rate)


def parse_selection(text: str) -> int | tuple[str, ...]:
    """--plot_recordings: a count N (the first N of sample_submission.csv) or comma-separated recording ids."""
    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise UserError("--plot_recordings must be >= 1 or a list of recording ids")
        return int(text)
    ids = tuple(p.strip() for p in text.split(",") if p.strip())
    if not ids:
        raise UserError(f"--plot_recordings {text!r} is neither a count nor a list of recording ids")
    return ids


def select_ids(sample_ids: Sequence[str], selection: int | tuple[str, ...]) -> list[str]:
    """The recordings to plot, in sample_submission order for a count; given ids must be test recordings."""
    if isinstance(selection, int):
        return list(sample_ids[:selection])
    unknown = [r for r in selection if r not in set(sample_ids)]
    if unknown:
        raise UserError(f"--plot_recordings names {len(unknown)} id(s) not in sample_submission.csv, "
                        f"e.g. {unknown[0]}")
    return list(selection)


@dataclasses.dataclass(frozen=True)
class Timeline:
    """What one picture shows."""

    recording_id: str
    image: np.ndarray  # float32 [n_mels, frames] log-mel of the whole recording
    seconds_per_frame: float
    duration: float  # seconds
    centres: np.ndarray  # float64 [W] window centres, seconds
    scores: np.ndarray  # float32 [W, C] window scores (mean over runs)
    true_species: tuple[int, ...] | None  # None: no test_truth.csv


def window_scores(waveform: np.ndarray, score: Scorer, window: int, stride: int, batch_size: int) -> np.ndarray:
    """float32 [n] -> float32 [W, C]: every window of the recording (trainer.data.windows' rule) scored."""
    cut = cut_windows(waveform, window, stride)  # [W, window]
    return np.concatenate([score(cut[a:a + batch_size]) for a in range(0, len(cut), batch_size)])


def build_timeline(recording_id: str, waveform: np.ndarray, mel_cfg: mel.MelConfig, window: int, stride: int,
                   scores: np.ndarray, true_species: Sequence[int] | None) -> Timeline:
    """The picture's data: log-mel of the whole recording, scores [W, C] at the windows' centres."""
    image = np.asarray(mel.log_mel(np.asarray(waveform, np.float32), mel_cfg))  # [n_mels, frames]
    rate = mel_cfg.sample_rate
    centres = window_centre_seconds(len(waveform), window, stride, rate)
    if len(centres) != len(scores):
        raise ValueError(f"{len(scores)} window scores for {len(centres)} windows of {recording_id}")
    return Timeline(recording_id, image, mel_cfg.hop_length / rate, len(waveform) / rate, centres,
                    np.asarray(scores, np.float32), None if true_species is None else tuple(true_species))


def species_to_show(tl: Timeline, top_k: int = TOP_K) -> list[tuple[int, bool]]:
    """(species, is true) of the top-k by best window score, then any true species not among them."""
    best = tl.scores.max(axis=0)
    top = [int(k) for k in np.argsort(-best, kind="stable")[:top_k]]
    true = set(tl.true_species or ())
    return [(k, k in true) for k in top] + [(k, True) for k in sorted(true) if k not in top]


def plot_timeline(tl: Timeline, path: str, top_k: int = TOP_K) -> None:
    """Two panels sharing the time axis: log-mel above, window scores below."""
    fig = plots.new_figure(12.0, 5.5)
    spec_ax, score_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    frames = tl.image.shape[1]
    spec_ax.imshow(tl.image, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(-0.5 * tl.seconds_per_frame, (frames - 0.5) * tl.seconds_per_frame, -0.5,
                           tl.image.shape[0] - 0.5))
    truth = "" if tl.true_species is None else (f"; true species {', '.join(map(str, tl.true_species))}"
                                                if tl.true_species else "; no species in test_truth.csv")
    spec_ax.set(ylabel="mel band", title=f"{tl.recording_id}: log-mel and window scores{truth}")
    for k, is_true in species_to_show(tl, top_k):
        score_ax.plot(tl.centres, tl.scores[:, k], marker="o", markersize=3, linestyle="-" if is_true else "--",
                      linewidth=2.0 if is_true else 1.2, label=f"s{k}" + (" (true)" if is_true else ""))
    score_ax.set(xlabel="seconds (scores at window centres)", ylabel="window score", ylim=(-0.02, 1.02),
                 xlim=(0.0, max(tl.duration, float(tl.centres[-1]))))
    score_ax.grid(alpha=0.3)
    score_ax.legend(loc="upper right", fontsize=8, ncol=2)
    plots.save_png(fig, path, dpi=80)


def _read_truth(shards_dir: str) -> dict[str, tuple[int, ...]] | None:
    path = fs.join(shards_dir, shards_layout.TEST_TRUTH)
    if not fs.exists(path):
        return None
    table = submission.read_score_table(path)  # recording_id, s0..s{C-1}
    labels = table.drop(columns=submission.ID_COLUMN).to_numpy(np.float64) >= 0.5  # [R, C]
    return {r: tuple(int(k) for k in np.flatnonzero(row)) for r, row in zip(table[submission.ID_COLUMN], labels)}


def _read_waveforms(shards_dir: str, manifest: Manifest, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The audio of `ids`, streaming the test shards until all are found."""
    wanted, found = set(ids), {}
    for rec in recordings.iter_test_recordings(shards_dir, manifest):
        if rec.recording_id in wanted:
            found[rec.recording_id] = rec.waveform
            if len(found) == len(wanted):
                break
    missing = [r for r in ids if r not in found]
    if missing:
        raise UserError(f"{len(missing)} recording(s) to plot are not in the test shards, e.g. {missing[0]}")
    return found


def write_timelines(plot_dir: str, scorers: Sequence[Any], shards_dir: str, selection: int | tuple[str, ...],
                    batch_size: int = 16, top_k: int = TOP_K) -> dict[str, Timeline]:
    """One PNG per chosen recording into plot_dir (plot_dir/<recording_id>.png); returns {path: its Timeline}.

    `scorers` are trainer.inference.predict's (each: .run, .window, .stride, called on [B, window] waveforms),
    so the windows plotted are the ones the submission scored. Runs whose window or front end differs from
    the first run's are left out (said in the log): their windows would not line up.
    """
    manifest = discovery.read_manifest(str(shards_dir))
    sample = submission.read_sample_submission(str(shards_dir), manifest.num_classes)
    ids = select_ids(sample[submission.ID_COLUMN].tolist(), selection)
    first = scorers[0]
    key = lambda s: (s.window, s.stride, mel.features_only(s.run.config.mel))  # noqa: E731  (not --mel.device)
    used = [s for s in scorers if key(s) == key(first)]
    if len(used) < len(scorers):
        print(f"timelines: left out {len(scorers) - len(used)} run(s) whose window, stride or log-mel differs "
              f"from {first.run.run_dir}'s")
    waveforms = _read_waveforms(str(shards_dir), manifest, ids)
    per_run = []
    for score in used:
        per_run.append({r: window_scores(waveforms[r], score, first.window, first.stride, batch_size)
                        for r in ids})
    truth = _read_truth(str(shards_dir))
    paths: dict[str, Timeline] = {}
    for r in ids:
        scores = np.mean([p[r] for p in per_run], axis=0)  # [W, C]
        tl = build_timeline(r, waveforms[r], first.run.config.mel, first.window, first.stride, scores,
                            None if truth is None else truth.get(r, ()))
        path = fs.join(plot_dir, f"{r}.png")
        plot_timeline(tl, path, top_k)
        paths[path] = tl
    print(f"wrote {len(paths)} detection timeline(s) to {plot_dir}")
    return paths
