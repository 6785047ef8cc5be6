"""The tf.data graphs over the shards: draws, crops, targets, augmentation, log-mel, batches.

Training (all epochs as one stream of steps_per_epoch x epochs batches):

    tp files ------shuffle, repeat--> interleave(TFRecordDataset) --> shuffle(buffer) --\\
                   [--> thinned by species with class_balance > 0 (balanced_tp)]          sample_from_datasets
    fp + background files --same------------------------------------------------------/  (1 - f, f)
      --> enumerate i (from the resume point) --> parse (trainer.data.records.train_parse_spec)
      --> int16 -> float32 [slice] --> random window [window] keeping >= min_box_overlap of the event,
          seeded by (seed, i) --> targets from the slice's boxes: y = [labels | weights] [2C] (trainer.data.targets)
      --> zip a background window [window] (with augment.background_mix_p > 0: background_windows, a
          random window of a background slice of the training folds; zeros if from the same recording)
      --> trainer.augment.chain.augment_with_seed (tf.numpy_function) -> (waveform [window], pitch steps [])
      --> mel.log_mel, pitch-shifted by the steps [n_mels, frames, 1] --> SpecAugment masks
      --> batch(drop_remainder) [B, n_mels, frames, 1], [B, 2C] --> mixup --> prefetch

With the log-mel in the model (`--mel.device model`, trainer.features.placement) the map stops after the
numpy chain and draws the SpecAugment stripes instead of applying them; each batch is then
{WAVEFORM [B, window], PITCH_STEPS [B], FREQ_MASK [B, n_mels], TIME_MASK [B, frames], MIX_PARTNER [B],
MIX_LAM [B]} and the targets [B, 2C] mixed on the host (mixup's draw), same seeds, same values.

f is `negative_fraction`: each batch holds on average that share of negative slices (fp boxes and
background), drawn independently of how many there are. Validation: every slice of the fold in file
order, a window centred on the event (background: the slice centre), no augmentation, the last
partial batch kept; each batch carries its slices' recording id, kind, targets and crop offset
with the features (for the recording-level metric and val_predictions.csv); with the log-mel in the
model the features are the waveforms, "waveform" [B, window] instead of "x".

    from trainer.data import discovery, inputs
    fold_inputs = discovery.prepare_fold("data/shards/demo", fold=0, cfg=cfg)
    train = inputs.train_dataset(fold_inputs.train_files_by_kind, cfg, global_batch=32, steps_per_epoch=40)
    val = inputs.eval_dataset(fold_inputs.val_files, cfg, batch_size=32)   # {"x", "y", "offset", META_KEYS}
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from core import crop, schema
from trainer.augment import chain
from trainer.augment import spec as spec_augment
from trainer.data import discovery, records, soft_targets, targets
from trainer.data.discovery import NEGATIVE_KINDS, window_samples
from trainer.features import mel, placement
from trainer.recipe.config import TrainConfig

AUTOTUNE = tf.data.AUTOTUNE
# The features the trainer reads; parsing only these (with the shared spec) skips the rest.
_TRAIN_KEYS = ("recording_id", "audio", "kind", "row_index", "slice_start", "fold", "event/t_min",
               "event/t_max", "boxes/species_id", "boxes/t_min", "boxes/t_max", "boxes/is_tp")
META_KEYS = ("recording_id", "kind", "row_index", "slice_start", "fold")


def parse_train_record(record: tf.Tensor, num_classes: int) -> dict[str, tf.Tensor]:
    """Serialized train example -> the fields the trainer uses; boxes/* as dense [n] tensors."""
    spec = records.train_parse_spec(num_classes)
    parsed = tf.io.parse_single_example(record, {k: spec[k] for k in _TRAIN_KEYS})
    for key in ("boxes/species_id", "boxes/t_min", "boxes/t_max", "boxes/is_tp"):
        parsed[key] = tf.sparse.to_dense(parsed[key])
    return parsed


def crop_offset(num_samples: tf.Tensor, window: int, event_start: tf.Tensor, event_end: tf.Tensor,
                seed: tf.Tensor | None, min_overlap: float = 1.0) -> tf.Tensor:
    """First sample (int64 scalar) of a `window`-sample crop of a slice of `num_samples` samples.

    event_start/end are the event's bounds in samples (float). Without a seed the window is centred on
    the event (core.crop.centred_start: the rule the pipeline cuts slices by); with a [2] stateless
    seed it is drawn uniformly among the starts of core.crop.crop_range (the window holds at least
    `min_overlap` of the event). A slice shorter than the window gives 0 (padded later).
    """
    def rule(n: np.int64, t0: np.float64, t1: np.float64) -> np.ndarray:
        if seed is None:
            return np.array([crop.centred_start(int(n), window, float(t0), float(t1))] * 2, np.int64)
        return np.array(crop.crop_range(int(n), window, float(t0), float(t1), min_overlap), np.int64)

    bounds = tf.numpy_function(rule, [tf.cast(num_samples, tf.int64), tf.cast(event_start, tf.float64),
                                      tf.cast(event_end, tf.float64)], tf.int64, stateful=False)
    lo, hi = tf.unstack(tf.ensure_shape(bounds, [2]))  # int64 [], [] (equal without a seed)
    if seed is None:
        return lo
    return tf.random.stateless_uniform([], seed, minval=lo, maxval=hi + 1, dtype=tf.int64)


def crop_window(waveform: tf.Tensor, offset: tf.Tensor, window: int) -> tf.Tensor:
    """float32 [n] -> float32 [window]: samples [offset, offset + window), zero-padded at the end."""
    piece = waveform[offset:offset + window]
    return tf.ensure_shape(tf.pad(piece, [[0, window - tf.shape(piece)[0]]]), [window])


def _window_targets(parsed: dict[str, tf.Tensor], offset: tf.Tensor, cfg: TrainConfig,
                    soft: soft_targets.SoftTargetLookup | None = None) -> tf.Tensor:
    """y [2C] of the window at `offset` samples (see trainer.data.targets; softmax reads only the labels).

    With `soft`, the pseudo labels of the window (by recording and start in the recording) fill in
    the species its boxes say nothing about.
    """
    rate = float(cfg.mel.sample_rate)
    boxes = {k: parsed[f"boxes/{k}"] for k in ("species_id", "t_min", "t_max", "is_tp")}
    pseudo = None if soft is None else soft(parsed["recording_id"], parsed["slice_start"] + tf.cast(offset, tf.int64))
    labels, weights = targets.window_targets(boxes, tf.cast(offset, tf.float32) / rate, window_samples(cfg) / rate,
                                             cfg.num_classes, cfg.min_box_overlap, cfg.unlabelled_weight,
                                             pseudo, cfg.soft_target_weight)
    return targets.pack(labels, weights)


def window_example(record: tf.Tensor, cfg: TrainConfig, seed: tf.Tensor | None,
                   soft: soft_targets.SoftTargetLookup | None = None) -> dict[str, tf.Tensor]:
    """Serialized example -> {"waveform": [window], "y": [2C], "offset": [], meta...}; random crop when seeded.

    `soft` (training only): the pseudo-label lookup the targets take the unlabelled species from.
    """
    parsed = parse_train_record(record, cfg.num_classes)
    audio = records.pcm16_to_float(parsed["audio"])  # [slice_samples]
    rate, window = float(cfg.mel.sample_rate), window_samples(cfg)
    offset = crop_offset(tf.size(audio, out_type=tf.int64), window, parsed["event/t_min"] * rate,
                         parsed["event/t_max"] * rate, seed, cfg.min_box_overlap)
    out = {"waveform": crop_window(audio, offset, window), "y": _window_targets(parsed, offset, cfg, soft),
           "offset": offset}
    out.update({k: parsed[k] for k in META_KEYS})
    return out


def features(waveform: tf.Tensor, cfg: TrainConfig, pitch_steps: tf.Tensor | None = None,
             max_pitch_steps: int = 0) -> tf.Tensor:
    """[window] -> [n_mels, frames, 1] model input, pitch-shifted by `pitch_steps` semitones if given.

    Per example inside the parallel map rather than once per batch: tf.data then runs several
    examples at once, which keeps both cores busier (benchmarks/bench_input.py).
    """
    return mel.log_mel(waveform, cfg.mel, pitch_steps, max_pitch_steps)[..., tf.newaxis]


AugmentFn = Callable[..., tuple[tf.Tensor, tf.Tensor | None]]


def augment_fn(cfg: TrainConfig) -> tuple[AugmentFn, int]:
    """(waveform [window], seed [2] int64, background [window] or None) -> (augmented waveform [window],
    pitch steps int32 [] or None).

    The numpy chain runs on the host CPU; the pitch steps (None without a mel-stage pitch shift)
    go to the mel front end with the second value returned, the range of the steps. The background
    window is passed only when the augmentation mixes backgrounds.
    """
    augmentation = chain.build_augmentation(cfg.augment, cfg.mel.sample_rate, cfg.seed)
    if not augmentation.chain.transforms and augmentation.mel_pitch is None and augmentation.background is None:
        return (lambda waveform, seed, background=None: (waveform, None)), 0  # no numpy round trip at all
    window = window_samples(cfg)

    def run(waveform: np.ndarray, seed: np.ndarray, *background: np.ndarray) -> tuple[np.ndarray, np.int32]:
        return chain.augment_with_seed(augmentation, waveform, seed, *background)

    def apply(waveform: tf.Tensor, seed: tf.Tensor,
              background: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor | None]:
        args = [waveform, seed] + ([background] if augmentation.background is not None and background is not None
                                   else [])
        # stateful=False: the output depends only on the inputs (the seed), so tf.data may parallelise it.
        out, steps = tf.numpy_function(run, args, [tf.float32, tf.int32], stateful=False)
        steps = tf.ensure_shape(steps, []) if augmentation.mel_pitch is not None else None
        return tf.ensure_shape(out, [window]), steps

    return apply, augmentation.max_pitch_steps


def element_seed(cfg: TrainConfig, index: tf.Tensor, salt: int = 0) -> tf.Tensor:
    """[2] int64 stateless seed of draw `index`: no RNG state shared between parallel map calls."""
    base = tf.random.experimental.stateless_fold_in(tf.constant([cfg.seed, salt], tf.int64), 0)
    return tf.random.experimental.stateless_fold_in(base, index)


def input_options() -> tf.data.Options:
    """tf.data threading: a private pool of cores + 1 threads, each op single-threaded.

    The default shares the process-wide pool and lets each op inside a map use several threads; on
    2 cores that left a core idle while a thread waited for the GIL inside tf.numpy_function
    (benchmarks/bench_input.py compares the two).
    """
    options = tf.data.Options()
    options.threading.private_threadpool_size = (os.cpu_count() or 1) + 1
    options.threading.max_intra_op_parallelism = 1
    return options


def _records(files: tf.Tensor | Sequence[str], num_files: int, deterministic: bool) -> tf.data.Dataset:
    """Serialized records of `files` (in that order), read a few files at a time."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        records.file_records,
        cycle_length=min(num_files, 8), num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def endless_records(files: Sequence[str], cfg: TrainConfig, seed: int, count: int | None = None) -> tf.data.Dataset:
    """Serialized records of `files` forever: each pass in a new seeded file order, then a shuffle buffer.

    With `count` (the manifest's), every pass must hold exactly that many records, as validation's
    reads must: a shard cut short or a raised count fails at the end of the first pass
    (trainer.data.discovery.naming_a_corrupt_shard_of names it) instead of training on fewer slices unnoticed.
    """
    order = (tf.data.Dataset.from_tensor_slices(list(files))
             .shuffle(len(files), seed=seed, reshuffle_each_iteration=True))
    if count is None:
        order = order.repeat()
    stream = order.interleave(records.file_records, cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
                              deterministic=cfg.deterministic)
    if count is not None:
        stream = stream.apply(tf.data.experimental.assert_cardinality(count)).repeat()
    return stream.shuffle(cfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)


def keep_probabilities(species_counts: Sequence[int], power: float) -> np.ndarray:
    """float64 [C]: the chance a tp draw of species s is kept, (n_s / n_min)^-power (n_min: the rarest species
    with slices; 1 for species without any). The kept draws of species s then follow n_s^(1 - power)."""
    n = np.asarray(species_counts, np.float64)
    keep = np.ones(len(n))
    present = n > 0
    if present.any():
        keep[present] = (n[present] / n[present].min()) ** -power
    return keep


def balanced_tp(tp: tf.data.Dataset, species_counts: Sequence[int], power: float, seed: int) -> tf.data.Dataset:
    """The serialized tp slices of `tp` thinned by their event species: each kept with keep_probabilities.

    A filter of its own rather than Dataset.rejection_resample: that one mixes in the unfiltered stream
    on the assumption that the given initial distribution is exactly the stream's, which the manifest's
    counts over every fold are not for a fold's training stream (a species may sit in the validation fold
    only); and its draws are stateful. Here a draw's fate is a stateless function of (seed, its index).
    """
    keep = tf.constant(keep_probabilities(species_counts, power), tf.float32)  # [C]
    spec = {"event/species_id": tf.io.FixedLenFeature([], tf.int64)}

    def kept(index: tf.Tensor, record: tf.Tensor) -> tf.Tensor:
        species = tf.io.parse_single_example(record, spec)["event/species_id"]
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), index]))
        return draw < tf.gather(keep, species)

    return tp.enumerate().filter(kept).map(lambda _, record: record)


def training_draws(files_by_kind: Mapping[str, Sequence[str]], cfg: TrainConfig, resume_index: int,
                   counts_by_kind: Mapping[str, int] | None = None,
                   species_counts: Sequence[int] | None = None) -> tf.data.Dataset:
    """The endless stream of serialized training slices: tp with probability 1 - f, else fp/background.

    Dataset.shuffle and sample_from_datasets take Python seeds only, so the resume point enters them:
    a resumed run draws a stream of the same distribution, not the uninterrupted run's exact one.
    `counts_by_kind` (the manifest's): each kind's pass is checked against it (endless_records).
    `species_counts` [C] (the manifest's tp slices per species): with cfg.class_balance > 0 the tp stream is
    resampled by balanced_tp; required then.
    """
    positives = list(files_by_kind.get(schema.KIND_TP, ()))
    negatives = [f for kind in NEGATIVE_KINDS for f in files_by_kind.get(kind, ())]
    seed = cfg.seed * 1_000_003 + resume_index
    counts = None if counts_by_kind is None else {k: int(counts_by_kind.get(k, 0)) for k in schema.SLICE_KINDS}
    tp = endless_records(positives, cfg, seed, None if counts is None else counts[schema.KIND_TP])
    if cfg.class_balance > 0:
        if species_counts is None:
            raise ValueError("class_balance needs the tp slices per species (the manifest's)")
        tp = balanced_tp(tp, species_counts, cfg.class_balance, seed + 8)  # background_windows uses seed + 6, + 7
    if not negatives or cfg.negative_fraction == 0.0:
        return tp
    negative_count = None if counts is None else sum(counts[k] for k in NEGATIVE_KINDS)
    return tf.data.Dataset.sample_from_datasets(
        [tp, endless_records(negatives, cfg, seed + 2, negative_count)],
        weights=[1.0 - cfg.negative_fraction, cfg.negative_fraction],
        seed=seed + 4)


def mel_on_model(cfg: TrainConfig) -> bool:
    """True when the model computes the log-mel (cfg.mel.device, "auto" resolved: trainer.features.placement)."""
    return placement.resolve(cfg.mel.device)[0] == placement.MODEL


def background_windows(files: Sequence[str], cfg: TrainConfig, resume_index: int,
                       count: int | None = None) -> tf.data.Dataset:
    """The endless stream of background windows to mix in: {"waveform": [window], "recording_id": []}.

    Each a random window (seeded by (cfg.seed, draw index), salt 3) of a slice drawn from `files`, the
    training folds' background slices, in a shuffled order of its own.
    """
    if not files:
        raise records.ShardsError("augment.background_mix_p > 0 needs background slices in the training folds, "
                                  "and the shards have none there; re-shard with background slices or pass "
                                  "--augment.background_mix_p 0")
    seed = cfg.seed * 1_000_003 + resume_index + 6

    def window(index: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        ex = window_example(record, cfg, element_seed(cfg, index, salt=3))
        return {"waveform": ex["waveform"], "recording_id": ex["recording_id"]}

    return (endless_records(files, cfg, seed, count).enumerate(start=resume_index)
            .map(window, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic))


def train_element_fn(cfg: TrainConfig, augmented: bool = True,
                     on_model: bool = False) -> Callable[..., dict[str, tf.Tensor]]:
    """(draw index, serialized slice[, background window dict]) -> window_example's dict plus "x"
    [n_mels, frames, 1]: one training element.

    The crop is seeded by (cfg.seed, index) whether or not `augmented`, so an element without
    augmentation (trainer.data.inspect_examples shows both) is the same window as the one the trainer is fed.
    With cfg.soft_targets, the targets take the sidecar's pseudo labels (trainer.data.soft_targets).
    `background` (from background_windows) is mixed in when cfg.augment.background_mix_p > 0; a
    background of the window's own recording is replaced by silence, which the mix leaves out.
    `on_model` (augmented only): "inputs" instead of "x", the model-side inputs of trainer.features.placement
    without mixup's: the augmented waveform, pitch steps and SpecAugment stripes.
    """
    augment, max_pitch_steps = augment_fn(cfg)
    soft = soft_targets.lookup_for(cfg.soft_targets, cfg.num_classes) if cfg.soft_targets else None

    def element(index: tf.Tensor, record: tf.Tensor,
                background: Mapping[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
        seed = element_seed(cfg, index)
        ex = window_example(record, cfg, tf.random.experimental.stateless_fold_in(seed, 0), soft)
        if not augmented:
            return {**ex, "x": features(ex["waveform"], cfg)}
        other = None
        if background is not None:
            same = tf.equal(background["recording_id"], ex["recording_id"])
            other = tf.where(same, tf.zeros_like(background["waveform"]), background["waveform"])  # [window]
        # [window], [] semitones or None
        waveform, steps = augment(ex["waveform"], tf.random.experimental.stateless_fold_in(seed, 1), other)
        if on_model:
            n_mels, frames, _ = discovery.input_shape(cfg)
            in_freq, in_time = spec_augment.draw_masks(n_mels, frames, cfg.augment,
                                                       tf.random.experimental.stateless_fold_in(seed, 2))
            model_inputs = {placement.WAVEFORM: waveform, placement.FREQ_MASK: in_freq, placement.TIME_MASK: in_time,
                            placement.PITCH_STEPS: tf.zeros([], tf.int32) if steps is None else steps}
            return {**ex, "inputs": model_inputs}
        x = features(waveform, cfg, steps, max_pitch_steps)  # [n_mels, frames, 1]
        return {**ex, "x": spec_augment.mask(x, cfg.augment, tf.random.experimental.stateless_fold_in(seed, 2))}

    return element


def train_dataset(files_by_kind: Mapping[str, Sequence[str]], cfg: TrainConfig, global_batch: int,
                  steps_per_epoch: int, initial_epoch: int = 0,
                  counts_by_kind: Mapping[str, int] | None = None, replicas: int = 1,
                  species_counts: Sequence[int] | None = None) -> tf.data.Dataset:
    """(x [B, n_mels, frames, 1], y [B, 2C]) batches of epochs initial_epoch .. cfg.epochs - 1 as one stream.

    Each element's randomness (crop, augmentation, masks) comes from a stateless seed of (cfg.seed,
    draw index), and mixup's from (cfg.seed, batch index), so parallel map calls share no RNG state.
    With the log-mel in the model (mel_on_model) x is the dict of trainer.features.placement; mixup
    partners are then drawn within each of the `replicas` parts of the batch (spec.draw_mixup).
    """
    on_model = mel_on_model(cfg)
    element = train_element_fn(cfg, on_model=on_model)
    first = initial_epoch * steps_per_epoch * global_batch
    total = (cfg.epochs - initial_epoch) * steps_per_epoch * global_batch

    def example(index: tf.Tensor, record: tf.Tensor, background: Mapping[str, tf.Tensor] | None = None
                ) -> tuple[tf.Tensor | dict[str, tf.Tensor], tf.Tensor]:
        ex = element(index, record, background)
        return ex["inputs" if on_model else "x"], ex["y"]  # [n_mels, frames, 1] or the model's inputs, [2C]

    def mixup(batch_index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = batch
        mix_targets = functools.partial(targets.mix, num_classes=cfg.num_classes)
        return spec_augment.mixup(x, y, cfg.augment, mix_targets, element_seed(cfg, batch_index, salt=1))

    def mixup_draw(batch_index: tf.Tensor, batch: tuple[dict[str, tf.Tensor], tf.Tensor]
                   ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The model mixes the log-mels (trainer.model.front_end); the targets are mixed here."""
        model_inputs, y = batch
        partner, lam, chosen = spec_augment.draw_mixup(tf.shape(y)[0], cfg.augment,
                                                       element_seed(cfg, batch_index, salt=1), replicas)
        y = spec_augment.mix_labels(y, partner, chosen, functools.partial(targets.mix, num_classes=cfg.num_classes))
        return {**model_inputs, placement.MIX_PARTNER: partner, placement.MIX_LAM: lam}, y

    def no_mixup(model_inputs: dict[str, tf.Tensor], y: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        batch = tf.shape(y)[0]
        return {**model_inputs, placement.MIX_PARTNER: tf.range(batch), placement.MIX_LAM: tf.ones([batch])}, y

    draws = training_draws(files_by_kind, cfg, first, counts_by_kind, species_counts).take(total).enumerate(start=first)
    if cfg.augment.enabled and cfg.augment.background_mix_p > 0:  # ((index, record), background window)
        count = None if counts_by_kind is None else int(counts_by_kind.get(schema.KIND_BACKGROUND, 0))
        backgrounds = background_windows(list(files_by_kind.get(schema.KIND_BACKGROUND, ())), cfg, first, count)
        examples = tf.data.Dataset.zip((draws, backgrounds)).map(
            lambda draw, background: example(*draw, background),
            num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
    else:
        examples = draws.map(example, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
    batches = examples.batch(global_batch, drop_remainder=True)  # [B, n_mels, frames, 1], [B, 2C]
    if on_model:
        if spec_augment.mixup_enabled(cfg.augment):
            batches = batches.enumerate(start=initial_epoch * steps_per_epoch).map(mixup_draw)
        else:
            batches = batches.map(no_mixup)
    elif spec_augment.mixup_enabled(cfg.augment):
        batches = batches.enumerate(start=initial_epoch * steps_per_epoch).map(mixup, num_parallel_calls=AUTOTUNE,
                                                                               deterministic=cfg.deterministic)
    return batches.prefetch(AUTOTUNE).with_options(input_options())


def eval_examples(files: Sequence[str], cfg: TrainConfig) -> tf.data.Dataset:
    """Unbatched validation examples in file order.

    Each is {"waveform": [window] centred on the event, "y": [2C], "offset": crop start, META_KEYS...}.
    """
    return _records(list(files), len(files), deterministic=True).map(
        lambda r: window_example(r, cfg, None), num_parallel_calls=AUTOTUNE, deterministic=True)


def eval_dataset(files: Sequence[str], cfg: TrainConfig, batch_size: int,
                 num_examples: int | None = None) -> tf.data.Dataset:
    """Validation batches in file order, the last one partial, each example with its metadata.

    Each batch is {"x": [B, n_mels, frames, 1], "y": [B, 2C], "offset": [B] crop start, META_KEYS: [B]}
    ("waveform" [B, window] instead of "x" with the log-mel in the model: mel_on_model), so scores
    and the slices they belong to come from one pass (trainer.training.validation). With
    `num_examples` (from prepare_fold) the dataset's length is known, so its end is not discovered
    by running out of data.
    """
    examples = eval_examples(files, cfg)
    on_model = mel_on_model(cfg)
    if num_examples is not None:
        examples = examples.apply(tf.data.experimental.assert_cardinality(num_examples))

    def with_features(ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {k: ex[k] for k in META_KEYS + ("y", "offset")}
        if on_model:
            out["waveform"] = ex["waveform"]  # [window]
        else:
            out["x"] = features(ex["waveform"], cfg)  # [n_mels, frames, 1]
        return out

    return (examples
            .map(with_features, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(AUTOTUNE)
            .with_options(input_options()))
