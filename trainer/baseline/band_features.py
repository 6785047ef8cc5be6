"""Per-band statistics of the project's log-mel front end: the features of the baseline (trainer.baseline.run).

    windows float32 [B, samples]
      -> trainer.features.mel.log_mel ("db" scaling: one affine map of dB for every window)  [B, n_mels, frames]
      -> per mel band over frames: mean, max, std                                    [B, 3, n_mels]
      -> flattened: n_mels means, then n_mels maxes, then n_mels stds                [B, 3 * n_mels]

Training slices give one window each, centred on the slice's event (a background slice: on the
slice centre), clamped inside the slice and zero-padded at the end when the slice is shorter than
the window (the trainer's validation crop). Test recordings give sliding windows every `stride`
samples (trainer.data.windows). Reading streams one record at a time and keeps only the features
(3 * n_mels floats per window), never the audio, so memory does not grow with the audio read.

    from trainer.baseline import band_features as bf
    stats = bf.BandStats(mel_cfg, window=5 * 48000)
    table = bf.read_train_slices(files_by_fold, num_classes=24, sample_rate=48000, stats=stats)
    ids, x, owner = bf.read_test_windows(shards_dir, manifest, stats, stride=stats.window // 2)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from core import crop, schema
from core.errors import UserError
from core.manifest import Manifest
from core.progress import Progress
from core.windows import window_batches
from trainer.data import recordings, records
from trainer.features import mel

STATISTICS = ("mean", "max", "std")
# The train features the baseline reads (a subset of the shared spec: the box lists are skipped).
_TRAIN_KEYS = ("schema_version", "sample_rate", "recording_id", "audio", "kind", "row_index", "slice_start",
               "fold", "event/t_min", "event/t_max", "labels", "label_known")


class BandStats:
    """Callable: float32 [B, window] windows -> float32 [B, 3 * n_mels] band statistics (see module doc).

    One traced TF graph per instance (fixed window length), so batches of any size reuse it.
    """

    def __init__(self, mel_config: mel.MelConfig, window: int, batch_size: int = 32) -> None:
        if mel_config.scaling != "db":
            # Min-max scaling per window stretches a window without a call to the full range; the
            # band statistics then describe noise as if it were signal.
            raise ValueError("band statistics use the 'db' scaling of the log-mel")
        self.mel_config, self.window, self.batch_size = mel_config, int(window), int(batch_size)

        @tf.function(input_signature=[tf.TensorSpec([None, self.window], tf.float32)])
        def features(windows: tf.Tensor) -> tf.Tensor:
            x = mel.log_mel(windows, mel_config)  # [B, n_mels, frames]
            stats = [tf.reduce_mean(x, axis=-1), tf.reduce_max(x, axis=-1), tf.math.reduce_std(x, axis=-1)]
            return tf.concat(stats, axis=-1)  # [B, 3 * n_mels]

        self._features = features

    @property
    def num_features(self) -> int:
        return len(STATISTICS) * self.mel_config.n_mels

    def feature_names(self) -> list[str]:
        return [f"{s}{b}" for s in STATISTICS for b in range(self.mel_config.n_mels)]

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window:
            raise ValueError(f"expected windows [B, {self.window}], got {windows.shape}")
        if not len(windows):
            return np.zeros((0, self.num_features), np.float32)
        return self._features(tf.constant(windows)).numpy()


def centred_window(audio: np.ndarray, window: int, start: float, end: float) -> np.ndarray:
    """float32 [n] -> float32 [window] centred on event [start, end] samples (core.crop.centred_start),
    zero-padded at the end when the slice is shorter than the window."""
    offset = crop.centred_start(len(audio), window, start, end)
    piece = np.asarray(audio[offset:offset + window], np.float32)
    return np.pad(piece, (0, window - len(piece)))


def slice_event(kind: str, num_samples: int, t_min: float, t_max: float, sample_rate: int) -> tuple[float, float]:
    """[start, end] samples the window of a training slice is centred on: its event, or the slice's centre
    for a background slice (which has none)."""
    if kind == schema.KIND_BACKGROUND:
        return num_samples / 2.0, num_samples / 2.0
    return t_min * sample_rate, t_max * sample_rate


@dataclasses.dataclass
class SliceTable:
    """Features and metadata of training slices, one row each (N rows, C classes, F features)."""

    features: np.ndarray  # float32 [N, F]
    labels: np.ndarray  # float32 [N, C]
    known: np.ndarray  # float32 [N, C]
    recording_id: np.ndarray  # str [N]
    fold: np.ndarray  # int64 [N]
    kind: np.ndarray  # str [N]
    row_index: np.ndarray  # int64 [N]
    slice_start: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.fold)


def _parsed_records(path: str, num_classes: int) -> Iterator[dict[str, Any]]:
    spec = records.train_parse_spec(num_classes)
    yield from records.parsed_records([path], {k: spec[k] for k in _TRAIN_KEYS})


def read_train_slices(files_by_fold: Mapping[int, Sequence[str]], num_classes: int, sample_rate: int,
                      stats: BandStats, total: int | None = None) -> SliceTable:
    """Every slice of `files_by_fold` ({fold: absolute shard paths}) -> SliceTable, in file order.

    Each record's schema version, sample rate and fold (against the fold its file is listed under)
    are checked; `total` (slices expected, for the progress line) may be None.
    """
    meta: dict[str, list] = {k: [] for k in ("labels", "known", "recording_id", "fold", "kind", "row_index",
                                             "slice_start")}
    features: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    progress = Progress("reading training slices", total, unit="slices")

    def flush() -> None:
        features.append(stats(np.stack(pending)))
        pending.clear()

    for fold, paths in sorted(files_by_fold.items()):
        for path in paths:
            for r in _parsed_records(path, num_classes):
                rec_id = r["recording_id"].decode()
                schema.check_version(r["schema_version"], f"train example {rec_id} in {path}")
                if int(r["sample_rate"]) != sample_rate:
                    raise UserError(f"train example {rec_id} in {path} has sample rate {int(r['sample_rate'])} Hz, "
                                    f"the manifest says {sample_rate} Hz; re-run `make shards`")
                if int(r["fold"]) != fold:
                    raise UserError(f"train example {rec_id} in {path} is of fold {int(r['fold'])} but the manifest "
                                    f"lists the file under fold {fold}; re-run `make shards`")
                audio = schema.pcm16_to_float_numpy(r["audio"])
                kind = r["kind"].decode()
                event = slice_event(kind, len(audio), float(r["event/t_min"]), float(r["event/t_max"]), sample_rate)
                pending.append(centred_window(audio, stats.window, *event))
                for key, value in (("labels", r["labels"]), ("known", r["label_known"]), ("recording_id", rec_id),
                                   ("fold", fold), ("kind", kind), ("row_index", int(r["row_index"])),
                                   ("slice_start", int(r["slice_start"]))):
                    meta[key].append(value)
                if len(pending) == stats.batch_size:
                    flush()
                    progress.update(len(meta["fold"]))
    if pending:
        flush()
    progress.update(len(meta["fold"]), final=True)
    n = len(meta["fold"])
    return SliceTable(
        features=np.concatenate(features) if features else np.zeros((0, stats.num_features), np.float32),
        labels=np.asarray(meta["labels"], np.float32).reshape(n, num_classes),
        known=np.asarray(meta["known"], np.float32).reshape(n, num_classes),
        recording_id=np.asarray(meta["recording_id"], dtype=str),
        fold=np.asarray(meta["fold"], np.int64),
        kind=np.asarray(meta["kind"], dtype=str),
        row_index=np.asarray(meta["row_index"], np.int64),
        slice_start=np.asarray(meta["slice_start"], np.int64),
    )


def read_test_windows(shards_dir: str, manifest: Manifest, stats: BandStats,
                      stride: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sliding windows of every test recording -> (ids [R] in shard order, features [W, F], owner [W]).

    owner[w] is the index in `ids` of the recording window w comes from.
    """
    progress = Progress("reading test recordings", manifest.test_examples)
    ids: list[str] = []

    def waveforms() -> Iterator[np.ndarray]:
        for rec in recordings.iter_test_recordings(shards_dir, manifest):
            ids.append(rec.recording_id)
            progress.update(len(ids))
            yield rec.waveform

    features, owners = [], []
    for batch, owner in window_batches(waveforms(), stats.window, stride, stats.batch_size):
        features.append(stats(batch))  # [<=batch_size, F]
        owners.append(owner)
    progress.update(len(ids), final=True)
    if not features:
        return ids, np.zeros((0, stats.num_features), np.float32), np.zeros(0, np.int64)
    return ids, np.concatenate(features), np.concatenate(owners)
