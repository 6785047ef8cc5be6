"""tf.data input over the shards of pipeline.shards: fold split, checks, crops, augmentation, log-mel.

Training reads the shards of every fold but K, validation the shards of fold K (paths from
OUT/manifest.json). Before anything is built, `prepare_fold` checks the manifest, every file's
framing (a corrupt TFRecord is named) and the first record of each file (schema version, sample
rate), and that the window fits the slices; each is a UserError with what exists.

Training, epochs initial_epoch .. epochs-1 as one stream (steps_per_epoch = examples // batch):

    for each epoch e: files --stateless shuffle(seed, e)--> interleave(TFRecordDataset) --> enumerate i
      --> shuffle(buffer) --> parse (schema.train_parse_spec) --> int16 -> float32 [slice] (schema.pcm16_to_float)
      --> random window [window] keeping the event inside, seeded by (seed, e, i)
      --> augment.augment_with_seed (tf.numpy_function, per-element seed from (seed, e, i))
          -> (waveform [window], pitch steps [])
      --> mel.log_mel, pitch-shifted by the steps [n_mels, frames, 1]
      --> batch(drop_remainder) [B, n_mels, frames, 1] --> prefetch

Validation: files in manifest order, a window centred on the event, no augmentation, last partial
batch kept. Labels are the multi-hot `labels` (loss "sigmoid") or the one-hot of event/species_id
("softmax").

    from trainer import data
    fold_inputs = data.prepare_fold("data/shards/demo", fold=0, cfg=cfg)
    train = data.train_dataset(fold_inputs.train_files, cfg, global_batch=32)   # (x, y), all epochs
    val = data.eval_dataset(fold_inputs.val_files, cfg, batch_size=32)          # (x, y)
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from pipeline import schema
from pipeline.errors import UserError
from trainer import augment, mel
from trainer.config import TrainConfig

AUTOTUNE = tf.data.AUTOTUNE
MANIFEST = "manifest.json"
# The features the trainer reads; parsing only these (with the shared spec) skips the box lists.
_TRAIN_KEYS = ("recording_id", "audio", "row_index", "slice_start", "fold",
               "event/species_id", "event/t_min", "event/t_max", "labels")
META_KEYS = ("recording_id", "row_index", "slice_start", "fold")
_READ_BUFFER = 8 << 20


class ShardsError(UserError):
    """The shards dir, its manifest or a shard file cannot be used for training."""


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What the up-front pass learnt about one TFRecord file."""

    path: str
    num_records: int
    schema_version: int
    sample_rate: int


@dataclasses.dataclass(frozen=True)
class FoldInputs:
    """The checked shard files of one cross-validation split."""

    shards_dir: str
    fold: int
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    num_train: int
    num_val: int
    manifest: dict[str, Any]


def window_samples(cfg: TrainConfig) -> int:
    return int(round(cfg.window_seconds * cfg.mel.sample_rate))


def input_shape(cfg: TrainConfig) -> tuple[int, int, int]:
    """Model input (n_mels, frames, 1) for the configured window: 10 s at 48 kHz, hop 512 -> (128, 938, 1)."""
    return cfg.mel.n_mels, mel.num_frames(window_samples(cfg), cfg.mel), 1


# ---- manifest and files ----

def _listing(path: str) -> str:
    try:
        names = sorted(tf.io.gfile.listdir(path))
    except tf.errors.OpError:
        return "(cannot list it)"
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "(empty)"


# What readers of the manifest (here, trainer.runs, trainer.recordings) rely on.
MANIFEST_KEYS = ("schema_version", "num_classes", "sample_rate", "slice_seconds", "num_folds", "files", "counts")


def read_manifest(shards_dir: str) -> dict[str, Any]:
    """OUT/manifest.json of a finished shards job (its presence means the job finished)."""
    if not tf.io.gfile.isdir(shards_dir):
        raise ShardsError(f"shards dir {shards_dir} does not exist; build it with `make shards` "
                          f"(or pass --shards_dir of an existing one)")
    path = os.path.join(shards_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise ShardsError(f"{shards_dir} has no {MANIFEST}, so it is not a finished shards dir (it holds: "
                          f"{_listing(shards_dir)}); run `make shards` and wait for it to finish")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            manifest = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardsError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise ShardsError(f"{path} must hold a JSON object, got {type(manifest).__name__}; re-run `make shards`")
    schema.check_version(manifest.get("schema_version", -1), path)
    missing = sorted(set(MANIFEST_KEYS) - set(manifest))
    if missing:
        raise ShardsError(f"{path} lacks {', '.join(missing)}; it was not written by a finished `make shards`")
    return manifest


def fold_files(manifest: dict[str, Any], shards_dir: str, fold: int) -> tuple[list[str], list[str]]:
    """(train files = every fold but `fold`, val files = `fold`), absolute, in manifest order."""
    by_fold = manifest.get("files", {}).get("train", {})
    with_shards = sorted(int(k) for k, v in by_fold.items() if v)
    counts = manifest.get("counts", {}).get("train_examples_per_fold", {})
    described = ", ".join(f"{k} ({counts.get(str(k), '?')} examples)" for k in with_shards) or "none"
    if str(fold) not in by_fold:
        raise ShardsError(f"unknown fold {fold}: {shards_dir} has folds 0..{len(by_fold) - 1}; "
                          f"folds with shards: {described}")
    if not by_fold[str(fold)]:
        raise ShardsError(f"{shards_dir} has no shard for fold {fold} (no examples fell into it); "
                          f"folds with shards: {described}")
    train = [os.path.join(shards_dir, p) for k in sorted(by_fold, key=int) if k != str(fold)
             for p in by_fold[k]]
    if not train:
        raise ShardsError(f"{shards_dir} has no training shards outside fold {fold}; folds with shards: "
                          f"{described}")
    val = [os.path.join(shards_dir, p) for p in by_fold[str(fold)]]
    missing = [p for p in train + val if not tf.io.gfile.exists(p)]
    if missing:
        raise ShardsError(f"{len(missing)} shard file(s) listed in {shards_dir}/{MANIFEST} are missing, "
                          f"e.g. {missing[0]}; re-run `make shards`")
    return train, val


# Up-front scans keyed by (path, size, mtime): trainer.cv trains several folds in one process and
# each file is read through once, not once per fold. A changed file is scanned again.
_SCANNED: dict[tuple[str, int, int], ShardInfo] = {}


def _first_record_fields(record: tf.Tensor) -> tuple[int, int]:
    """schema_version and sample_rate of a serialized example, of any schema version."""
    spec = {"schema_version": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    parsed = tf.io.parse_single_example(record, spec)
    return int(parsed["schema_version"]), int(parsed["sample_rate"])


def tf_error_reason(error: tf.errors.OpError) -> str:
    """The gist of a TF error: "corrupted record at 12" without the op and function names around it."""
    text = re.sub(r"\{\{[^}]*\}\}", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", text).strip(" '") or type(error).__name__


def scan_shard(path: str, use_cache: bool = True) -> ShardInfo:
    """Reads `path` through once (TFRecord length and CRC checks): record count and first record fields.

    Raises ShardsError naming the file when it is corrupt, truncated or empty.
    """
    stat = tf.io.gfile.stat(path)
    key = (path, int(stat.length), int(stat.mtime_nsec))
    if use_cache and key in _SCANNED:
        return _SCANNED[key]
    dataset = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER)
    try:
        first = next(iter(dataset.take(1)), None)
        count = int(dataset.reduce(np.int64(0), lambda n, _: n + 1))
        version, rate = _first_record_fields(first) if first is not None else (-1, -1)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise ShardsError(f"shard {path} is corrupt ({tf_error_reason(e)}); re-run `make shards` or restore "
                          f"the file") from e
    if count == 0:
        raise ShardsError(f"shard {path} holds no records; re-run `make shards`")
    info = ShardInfo(path, count, version, rate)
    _SCANNED[key] = info
    return info


def scan_shards(paths: Sequence[str], use_cache: bool = True) -> list[ShardInfo]:
    """scan_shard over many files, a few at a time (reads are I/O bound, gs:// especially)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda p: scan_shard(p, use_cache), paths))


def find_corrupt_shard(paths: Sequence[str]) -> str | None:
    """Re-reads every file (no cache) and returns the ShardsError message of the first bad one."""
    for path in paths:
        try:
            scan_shard(path, use_cache=False)
        except ShardsError as e:
            return str(e)
    return None


def check_compatible(manifest: dict[str, Any], infos: Sequence[ShardInfo], cfg: TrainConfig,
                     shards_dir: str) -> None:
    """The shards must be of this schema version, sample rate and class count, with slices >= window."""
    for info in infos:
        schema.check_version(info.schema_version, f"shard {info.path}")
        if info.sample_rate != cfg.mel.sample_rate:
            raise ShardsError(f"shard {info.path} holds {info.sample_rate} Hz audio but the config reads "
                              f"{cfg.mel.sample_rate} Hz (--mel.sample_rate); use matching shards or config")
    if int(manifest["num_classes"]) != cfg.num_classes:
        raise ShardsError(f"{shards_dir} has {manifest['num_classes']} classes but the config has "
                          f"num_classes={cfg.num_classes}; pass --num_classes {manifest['num_classes']}")
    slice_seconds = float(manifest["slice_seconds"])
    if cfg.window_seconds > slice_seconds:
        raise ShardsError(f"window_seconds={cfg.window_seconds} is longer than the {slice_seconds} s slices of "
                          f"{shards_dir}; pass --window_seconds {slice_seconds:g} or less, or re-shard with "
                          f"--slice_seconds {cfg.window_seconds:g}")


def prepare_fold(shards_dir: str, fold: int, cfg: TrainConfig) -> FoldInputs:
    """Finds and checks the shards of one split; every user mistake is a ShardsError/SchemaError."""
    manifest = read_manifest(shards_dir)
    train, val = fold_files(manifest, shards_dir, fold)
    infos = scan_shards(train + val)
    check_compatible(manifest, infos, cfg, shards_dir)
    n_train = sum(i.num_records for i in infos[:len(train)])
    n_val = sum(i.num_records for i in infos[len(train):])
    return FoldInputs(shards_dir, fold, tuple(train), tuple(val), n_train, n_val, manifest)


# ---- per-example transforms (graph functions) ----

def parse_train_record(record: tf.Tensor, num_classes: int) -> dict[str, tf.Tensor]:
    """Serialized train example -> the fields the trainer uses (shared schema spec, subset of keys)."""
    spec = schema.train_parse_spec(num_classes)
    return tf.io.parse_single_example(record, {k: spec[k] for k in _TRAIN_KEYS})


def crop_offset(num_samples: tf.Tensor, window: int, event_start: tf.Tensor, event_end: tf.Tensor,
                seed: tf.Tensor | None) -> tf.Tensor:
    """First sample (int64 scalar) of a `window`-sample crop of a slice of `num_samples` samples.

    event_start/end are the event's bounds in samples (float). Without a seed the window is centred
    on the event; with a [2] stateless seed it is drawn uniformly (both bounds inclusive) among the
    offsets whose window holds the whole event, or lies inside the event when it is longer than the
    window. Offsets are clipped to the slice; a slice shorter than the window gives 0 (padded later).
    """
    n = tf.cast(num_samples, tf.float64)
    last = tf.maximum(n - window, 0.0)
    start = tf.clip_by_value(tf.cast(event_start, tf.float64), 0.0, n)
    end = tf.clip_by_value(tf.cast(event_end, tf.float64), start, n)
    if seed is None:
        return tf.cast(tf.clip_by_value(tf.round((start + end - window) / 2.0), 0.0, last), tf.int64)
    # Window [o, o + w) holds [start, end] iff end - w <= o <= start; the two swap for long events.
    lo = tf.clip_by_value(tf.math.ceil(tf.minimum(end - window, start)), 0.0, last)
    hi = tf.clip_by_value(tf.math.floor(tf.maximum(end - window, start)), lo, last)
    lo, hi = tf.cast(lo, tf.int64), tf.cast(hi, tf.int64)
    return tf.random.stateless_uniform([], seed, minval=lo, maxval=hi + 1, dtype=tf.int64)


def crop_window(waveform: tf.Tensor, offset: tf.Tensor, window: int) -> tf.Tensor:
    """float32 [n] -> float32 [window]: samples [offset, offset + window), zero-padded at the end."""
    piece = waveform[offset:offset + window]
    return tf.ensure_shape(tf.pad(piece, [[0, window - tf.shape(piece)[0]]]), [window])


def _targets(parsed: dict[str, tf.Tensor], cfg: TrainConfig) -> tf.Tensor:
    """[num_classes] float32: multi-hot labels (sigmoid loss) or one-hot of the event (softmax loss)."""
    if cfg.loss == "softmax":
        return tf.one_hot(parsed["event/species_id"], cfg.num_classes, dtype=tf.float32)
    return parsed["labels"]


def _window_example(record: tf.Tensor, cfg: TrainConfig, seed: tf.Tensor | None) -> dict[str, tf.Tensor]:
    """Serialized example -> {"waveform": [window], "label": [C], meta...}; random crop when seeded."""
    parsed = parse_train_record(record, cfg.num_classes)
    audio = schema.pcm16_to_float(parsed["audio"])  # [slice_samples]
    rate, window = float(cfg.mel.sample_rate), window_samples(cfg)
    offset = crop_offset(tf.size(audio, out_type=tf.int64), window, parsed["event/t_min"] * rate,
                         parsed["event/t_max"] * rate, seed)
    out = {"waveform": crop_window(audio, offset, window), "label": _targets(parsed, cfg), "offset": offset}
    out.update({k: parsed[k] for k in META_KEYS})
    return out


def _features(waveform: tf.Tensor, cfg: TrainConfig, pitch_steps: tf.Tensor | None = None,
              max_pitch_steps: int = 0) -> tf.Tensor:
    """[window] -> [n_mels, frames, 1] model input, pitch-shifted by `pitch_steps` semitones if given.

    Per example inside the parallel map: ~2x the throughput of one log_mel over the batch on 2 cores
    (216 vs 98 examples/s at 128 x 938), since tf.data runs several examples at once.
    """
    return mel.log_mel(waveform, cfg.mel, pitch_steps, max_pitch_steps)[..., tf.newaxis]


AugmentFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor | None]]


def _augment_fn(cfg: TrainConfig) -> tuple[AugmentFn, int]:
    """(waveform [window], seed [2] int64) -> (augmented waveform [window], pitch steps int32 [] or None).

    The numpy chain runs on the host CPU; the pitch steps (None without a mel-stage pitch shift)
    go to the mel front end with the second value returned, the range of the steps.
    """
    augmentation = augment.build_augmentation(cfg.augment, cfg.mel.sample_rate, cfg.seed)
    if not augmentation.chain.transforms and augmentation.mel_pitch is None:
        return (lambda waveform, seed: (waveform, None)), 0  # no numpy round trip at all
    window = window_samples(cfg)

    def run(waveform: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.int32]:
        return augment.augment_with_seed(augmentation, waveform, seed)

    def apply(waveform: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        # stateful=False: the output depends only on the inputs (the seed), so tf.data may parallelise it.
        out, steps = tf.numpy_function(run, [waveform, seed], [tf.float32, tf.int32], stateful=False)
        steps = tf.ensure_shape(steps, []) if augmentation.mel_pitch is not None else None
        return tf.ensure_shape(out, [window]), steps

    return apply, augmentation.max_pitch_steps


def _element_seed(cfg: TrainConfig, epoch: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """[2] int64 stateless seed of element `index` of `epoch`: no RNG state shared between map calls."""
    epoch_seed = tf.random.experimental.stateless_fold_in(tf.constant([cfg.seed, 0], tf.int64), epoch)
    return tf.random.experimental.stateless_fold_in(epoch_seed, index)


# ---- datasets ----

def _input_options() -> tf.data.Options:
    """tf.data threading of the train and eval pipelines.

    By default tf.data shares the process-wide pool (one thread per core) and lets each op inside
    a map use several threads. Measured on 2 cores (benchmarks/bench_input.py), that keeps ~1.8
    cores busy: a pool thread waiting for the GIL inside tf.numpy_function or handing an op's
    shards to other threads leaves a core idle. A private pool of cores + 1 threads, each running
    its ops single-threaded (the parallelism comes from the elements), keeps ~1.95 busy: ~5-8 %
    more examples/s with augmentation and without.
    """
    options = tf.data.Options()
    options.threading.private_threadpool_size = (os.cpu_count() or 1) + 1
    options.threading.max_intra_op_parallelism = 1
    return options


def _records(files: tf.Tensor | Sequence[str], num_files: int, deterministic: bool) -> tf.data.Dataset:
    """Serialized records of `files` (in that order), read a few files at a time."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=_READ_BUFFER),
        cycle_length=min(num_files, 8), num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def _epoch_records(files: Sequence[str], cfg: TrainConfig, epoch: tf.Tensor) -> tf.data.Dataset:
    """(epoch, index within the epoch, serialized record) of one pass over `files` in a seeded order."""
    file_seed = _element_seed(cfg, epoch, tf.constant(-1, tf.int64))
    shuffled = tf.random.experimental.stateless_shuffle(tf.constant(list(files)), seed=file_seed)
    return _records(shuffled, len(files), cfg.deterministic).enumerate().map(lambda i, r: (epoch, i, r))


def train_dataset(files: Sequence[str], cfg: TrainConfig, global_batch: int, initial_epoch: int = 0) -> tf.data.Dataset:
    """(x [B, n_mels, frames, 1], y [B, C]) batches of epochs initial_epoch .. cfg.epochs - 1 as one stream.

    Give Keras steps_per_epoch = num_examples // global_batch. Each element's randomness (crop,
    augmentation) comes from a stateless seed of (cfg.seed, epoch, index), so parallel map calls
    share no RNG state and a seeded run is reproducible; a run resumed at epoch e restarts the
    stream at the first example of epoch e.
    """
    augment_fn, max_pitch_steps = _augment_fn(cfg)

    def example(epoch: tf.Tensor, index: tf.Tensor, record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seed = _element_seed(cfg, epoch, index)
        ex = _window_example(record, cfg, tf.random.experimental.stateless_fold_in(seed, 0))
        # [window], [] semitones or None
        waveform, steps = augment_fn(ex["waveform"], tf.random.experimental.stateless_fold_in(seed, 1))
        return _features(waveform, cfg, steps, max_pitch_steps), ex["label"]  # [n_mels, frames, 1], [C]

    records = tf.data.Dataset.range(initial_epoch, cfg.epochs).flat_map(lambda e: _epoch_records(files, cfg, e))
    # Shuffling the stream (not each epoch) lets a few examples cross epoch boundaries, which is harmless;
    # Dataset.shuffle only takes a Python seed, so it is the one piece seeded by the resume point too.
    return (records.shuffle(cfg.shuffle_buffer, seed=cfg.seed + 1_000_003 * initial_epoch)
            .map(example, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
            .batch(global_batch, drop_remainder=True)  # [B, n_mels, frames, 1], [B, C]
            .prefetch(AUTOTUNE)
            .with_options(_input_options()))


def eval_examples(files: Sequence[str], cfg: TrainConfig) -> tf.data.Dataset:
    """Unbatched validation examples in file order.

    Each is {"waveform": [window] centred on the event, "label": [C], "offset": crop start, META_KEYS...}.
    """
    return _records(list(files), len(files), deterministic=True).map(
        lambda r: _window_example(r, cfg, None), num_parallel_calls=AUTOTUNE, deterministic=True)


def eval_dataset(files: Sequence[str], cfg: TrainConfig, batch_size: int,
                 num_examples: int | None = None) -> tf.data.Dataset:
    """(x [B, n_mels, frames, 1], y [B, C]) validation batches, in file order, the last one partial.

    With `num_examples` (from prepare_fold) the dataset's length is known, so Keras knows the
    number of validation steps instead of discovering it by running out of data.
    """
    examples = eval_examples(files, cfg)
    if num_examples is not None:
        examples = examples.apply(tf.data.experimental.assert_cardinality(num_examples))
    return (examples
            .map(lambda ex: (_features(ex["waveform"], cfg), ex["label"]), num_parallel_calls=AUTOTUNE,
                 deterministic=True)
            .batch(batch_size)  # [B, n_mels, frames, 1], [B, C]
            .prefetch(AUTOTUNE)
            .with_options(_input_options()))


def eval_metadata(files: Sequence[str], cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Meta columns and labels of the validation examples in eval_dataset's order (no mel computed)."""
    columns: dict[str, list[np.ndarray]] = {k: [] for k in META_KEYS + ("label",)}
    meta = eval_examples(files, cfg).map(lambda ex: {k: ex[k] for k in columns}).batch(1024)
    for batch in meta.as_numpy_iterator():
        for k in columns:
            columns[k].append(batch[k])
    out = {k: np.concatenate(v) for k, v in columns.items()}
    out["recording_id"] = np.array([r.decode() for r in out["recording_id"]], dtype=object)
    return out

