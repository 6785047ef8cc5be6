"""trainer.data.inputs on hand-made v2 shards: validation windows, crops, targets, the tp/negative draws, batches.

The shards (tests/shard_factory.three_kind_folds) hold ramp audio, so a window's first sample value
is its offset, and per-fold species, so a window's targets tell its fold and kind. Expected values
are computed here from the hand-built events, never by the code under test.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core import schema
from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import FRAMES, N_MELS, RATE, small_config
from trainer.augment import chain
from trainer.data import discovery, inputs

SLICE = 32000  # 2 s
WINDOW = 16000  # 1 s
C = 24


def _centred_offset(n: int, t_min: float, t_max: float) -> int:
    centre = (t_min + t_max) / 2 * RATE
    return int(min(max(round(centre - WINDOW / 2), 0), max(n - WINDOW, 0)))


def _y(positive: dict[int, float], known: set[int], unlabelled: float) -> np.ndarray:
    labels, weights = np.zeros(C, np.float32), np.full(C, unlabelled, np.float32)
    for c, v in positive.items():
        labels[c] = v
    weights[list(known)] = 1.0
    return np.concatenate([labels, weights])


def test_validation_is_every_slice_of_fold_k_centred_on_its_event(shards):
    cfg = small_config(unlabelled_weight=0.3)
    fold = discovery.prepare_fold(shards, 0, cfg)
    examples = list(inputs.eval_examples(fold.val_files, cfg).as_numpy_iterator())
    assert len(examples) == fold.num_val == 6
    by_row = {int(ex["row_index"]): ex for ex in examples}
    assert {int(ex["fold"]) for ex in examples} == {0}
    # tp slices: centred on the event, positive for species 0, nothing else known.
    for i, (t_min, t_max) in enumerate(sf.VAL_EVENTS):
        ex, offset = by_row[i], _centred_offset(SLICE, t_min, t_max)
        np.testing.assert_array_equal(ex["waveform"], sf.ramp(SLICE)[offset:offset + WINDOW] / 32768.0)
        assert int(ex["offset"]) == offset and ex["kind"] == b"tp"
        np.testing.assert_allclose(ex["y"], _y({0: 1.0}, {0}, 0.3), atol=1e-7)
    assert [_centred_offset(SLICE, *e) for e in sf.VAL_EVENTS] == [0, 8000, 16000]  # start, middle, end
    short = by_row[9]["waveform"]  # 0.75 s: padded at the end
    np.testing.assert_array_equal(short, np.concatenate([sf.ramp(12000), np.zeros(4000)]) / 32768.0)
    # fp slice: centred on its box (0.5-0.7 s -> 0.1 s), a known negative of species 10.
    fp = by_row[100]
    assert fp["kind"] == b"fp" and int(fp["offset"]) == 1600
    np.testing.assert_allclose(fp["y"], _y({}, {sf.FP_SPECIES}, 0.3), atol=1e-7)
    # background slice: centred on the slice, its known negative (20) only.
    background = by_row[schema.NO_ROW]
    assert background["kind"] == b"background" and int(background["offset"]) == (SLICE - WINDOW) // 2
    np.testing.assert_allclose(background["y"], _y({}, {sf.BACKGROUND_SPECIES}, 0.3), atol=1e-7)

    # The batches carry each slice's metadata with its features, in the same file order.
    batches = list(inputs.eval_dataset(fold.val_files, cfg, batch_size=4, num_examples=fold.num_val)
                   .as_numpy_iterator())
    assert [len(b["x"]) for b in batches] == [4, 2]  # the last batch partial
    batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert batch["x"].shape == (6, N_MELS, FRAMES, 1) and batch["y"].shape == (6, 2 * C)
    for key in inputs.META_KEYS + ("offset", "y"):
        np.testing.assert_array_equal(batch[key], [ex[key] for ex in examples], err_msg=key)
    for i, ex in enumerate(examples):  # the features are those of the example's own window
        np.testing.assert_allclose(batch["x"][i], inputs.features(ex["waveform"], cfg).numpy(), atol=1e-6)


def test_labels_are_multi_hot_over_every_tp_box_in_the_window(tmp_path):
    ex = sf.train_example("r", 0, species=3, t_min=0.5, t_max=0.7, audio=sf.ramp(SLICE), sample_rate=RATE,
                          extra_species=[7], fp_species=[9])
    other = sf.train_example("o", 1, species=1, t_min=0.5, t_max=0.7, audio=sf.ramp(SLICE), sample_rate=RATE)
    shards = sf.write_shards(str(tmp_path), {0: [ex], 1: [other]}, sample_rate=RATE)
    for loss in ("sigmoid", "softmax"):  # the softmax loss reads the same labels half
        cfg = small_config(loss=loss)
        y = next(iter(inputs.eval_examples(discovery.prepare_fold(shards, 0, cfg).val_files, cfg)))["y"].numpy()
        np.testing.assert_array_equal(y, _y({3: 1.0, 7: 1.0}, {3, 7, 9}, 0.0))


def _draws(start, end, n=40000, count=300, min_overlap=1.0, window=WINDOW):
    """`count` seeded crop offsets of one event."""
    offsets = tf.data.Dataset.range(count).map(lambda i: inputs.crop_offset(
        tf.constant(n, tf.int64), window, tf.constant(start), tf.constant(end), tf.stack([tf.constant(5, tf.int64), i]),
        min_overlap))
    return np.array(list(offsets.as_numpy_iterator()))


def test_training_crop_keeps_the_event_inside_with_both_bounds_reachable():
    # The window holds [20000, 35998] iff 19998 <= offset <= 20000: exactly three offsets.
    assert set(_draws(20000.0, 35998.0)) == {19998, 19999, 20000}
    # An event longer than the window: the window stays inside the event.
    long = _draws(1000.0, 30000.0)
    assert long.min() >= 1000 and (long + WINDOW).max() <= 30000 and len(set(long)) > 100
    # Near the slice start, offsets are clipped at 0 but still cover the event.
    assert set(_draws(10.0, 900.0)) == set(range(11))
    # A slice shorter than the window: offset 0 (the crop pads).
    assert set(_draws(100.0, 900.0, n=12000, count=20)) == {0}
    # Without a seed (validation): centred on the event.
    centred = inputs.crop_offset(tf.constant(40000, tf.int64), WINDOW, tf.constant(20000.0), tf.constant(22000.0),
                                 None)
    assert int(centred) == 21000 - WINDOW // 2


@pytest.mark.parametrize("min_overlap", [0.5, 0.25])
def test_training_crop_keeps_the_share_of_the_event_with_both_bounds_reachable(min_overlap):
    window = 60  # small, so that the draws reach both bounds of the allowed range (~100 offsets)
    for start, end in [(5000.0, 5030.0), (5000.0, 5100.0)]:  # shorter and longer than the window
        need = min_overlap * min(end - start, window)
        # Every offset o whose window [o, o + window) shares >= need samples with [start, end), by brute force.
        allowed = [o for o in range(0, 20000 - window + 1) if min(end, o + window) - max(start, o) >= need]
        drawn = _draws(start, end, n=20000, count=1500, min_overlap=min_overlap, window=window)
        overlap = np.minimum(end, drawn + window) - np.maximum(start, drawn)
        assert (overlap >= need).all()
        assert drawn.min() == min(allowed) and drawn.max() == max(allowed)


def _serialized(ex: dict) -> bytes:
    return schema.make_example(schema.TRAIN_FIELDS, ex).SerializeToString()


@pytest.mark.parametrize("min_overlap", [1.0, 0.5, 0.3])
def test_every_training_window_of_a_tp_slice_is_positive_for_its_species(min_overlap):
    """The crop (in samples) and the targets (in seconds) agree: no drawn window makes its own event "grazing".

    Events of about a window's length make most draws land on the bounds of the allowed range,
    where float32 seconds and integer samples must still agree.
    """
    cfg = small_config(min_box_overlap=min_overlap)
    rng = np.random.default_rng(11)
    records, seeds = [], []
    for case in range(24):
        length = [rng.uniform(0.05, 0.9), rng.uniform(0.99, 1.0), rng.uniform(1.0, 1.01), rng.uniform(1.01, 1.9)][case % 4]
        t_min = float(rng.uniform(0.0, 2.0 - length))
        ex = sf.train_example("r", 0, species=5, t_min=t_min, t_max=t_min + length, audio=sf.ramp(SLICE),
                              sample_rate=RATE)
        for i in range(25):
            records.append(_serialized(ex))
            seeds.append([case, i])
    windows = tf.data.Dataset.from_tensor_slices((records, np.array(seeds, np.int64))).map(
        lambda r, s: inputs.window_example(r, cfg, s)["y"]).batch(len(records))
    y = next(iter(windows)).numpy()
    bad = np.flatnonzero((y[:, 5] != 1.0) | (y[:, C + 5] != 1.0))
    assert bad.size == 0, f"{bad.size} of {len(y)} windows lost their own event, e.g. case {seeds[bad[0]]}"


def _kinds(y: np.ndarray) -> list[tuple[str, int]]:
    """(kind, fold) of each training draw, from its targets (see shard_factory.three_kind_folds)."""
    out = []
    for row in y:
        known = np.flatnonzero(row[C:] > 0)
        assert len(known) == 1, row  # exactly one species known per window (unlabelled weight 0)
        c = int(known[0])
        if row[c] == 1.0:
            out.append(("tp", sf.fold_of_species(c)))
        else:
            out.append(("fp" if c // 10 == 1 else "background", sf.fold_of_species(c)))
    return out


@pytest.mark.parametrize("negative_fraction", [0.25, 0.6])
def test_training_draws_follow_negative_fraction_and_never_the_validation_fold(shards, negative_fraction):
    cfg = small_config(negative_fraction=negative_fraction, epochs=2)
    fold = discovery.prepare_fold(shards, 0, cfg)
    batch, steps = 16, 25
    batches = list(inputs.train_dataset(fold.train_files_by_kind, cfg, batch, steps).as_numpy_iterator())
    assert len(batches) == cfg.epochs * steps
    for x, y in batches:
        assert x.shape == (batch, N_MELS, FRAMES, 1) and x.dtype == np.float32 and np.isfinite(x).all()
        assert y.shape == (batch, 2 * C)
    draws = _kinds(np.concatenate([y for _, y in batches]))
    n = len(draws)
    negatives = sum(kind != "tp" for kind, _ in draws)
    # Binomial(n, f): 4.5 standard deviations either side.
    assert abs(negatives - negative_fraction * n) <= 4.5 * np.sqrt(n * negative_fraction * (1 - negative_fraction))
    assert {fold for _, fold in draws} == {1, 2}  # fold 0 is validation: never drawn
    assert {kind for kind, _ in draws} == {"tp", "fp", "background"}


def test_training_stream_length_resumes_at_the_initial_epoch(shards):
    cfg = small_config(epochs=3)
    fold = discovery.prepare_fold(shards, 0, cfg)
    assert len(list(inputs.train_dataset(fold.train_files_by_kind, cfg, 4, 2))) == 6
    assert len(list(inputs.train_dataset(fold.train_files_by_kind, cfg, 4, 2, initial_epoch=2))) == 2


def test_training_stream_is_reproducible_for_a_seed_and_changes_with_it(shards):
    cfg = small_config()
    files = discovery.prepare_fold(shards, 0, cfg).train_files_by_kind

    def first_batches(c):
        return list(inputs.train_dataset(files, c, global_batch=4, steps_per_epoch=3).take(2).as_numpy_iterator())

    a, b, other = first_batches(cfg), first_batches(cfg), first_batches(small_config(seed=1))
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], other[0][0])


def test_spec_augment_and_mixup_are_wired_into_the_training_stream(shards):
    plain = small_config(negative_fraction=0.0)
    on = small_config(negative_fraction=0.0, augment={"enabled": True, "time_masks": 2, "time_mask_fraction": 0.3,
                                                      "mixup_p": 1.0, "mixup_alpha": 1.0})
    files = discovery.prepare_fold(shards, 0, plain).train_files_by_kind
    x0, y0 = next(iter(inputs.train_dataset(files, plain, 8, 2)))
    x1, y1 = next(iter(inputs.train_dataset(files, on, 8, 2)))
    assert not np.array_equal(x0.numpy(), x1.numpy())
    labels0, labels1 = y0.numpy()[:, :C], y1.numpy()[:, :C]
    assert (labels0.sum(axis=1) == 1).all()  # tp slices of one species each
    assert (labels1 >= labels0).all()  # mixup keeps each example's own positives (max) ...
    assert (labels1.sum(axis=1) == 2).any()  # ... and adds its partner's (species 1 and 2 both drawn)


def test_augmentation_hands_its_pitch_steps_to_the_mel_front_end():
    cfg = small_config(augment={"enabled": True, "pitch_shift_p": 1.0, "pitch_shift_max_steps": 5,
                                "pitch_shift_method": "mel"})  # only the pitch shift
    augment_fn, max_steps = inputs.augment_fn(cfg)
    assert max_steps == 5
    reference = chain.build_augmentation(cfg.augment, RATE, cfg.seed)
    waveform = tf.constant(sf.ramp(WINDOW) / 32768.0, tf.float32)
    drawn = set()
    for i in range(12):
        seed = tf.constant([3, i], tf.int64)
        out, steps = augment_fn(waveform, seed)
        np.testing.assert_array_equal(out.numpy(), waveform.numpy())  # the waveform is not shifted...
        assert int(steps) == chain.augment_with_seed(reference, waveform.numpy(), seed.numpy())[1]  # ...the mel is
        drawn.add(int(steps))
    assert len(drawn) > 3
    off_fn, off_steps = inputs.augment_fn(small_config())
    assert off_fn(waveform, tf.constant([3, 0], tf.int64))[1] is None and off_steps == 0


def test_centred_validation_window_inside_a_longer_event_is_positive_with_min_overlap_1(tmp_path):
    """min_box_overlap 1 asks a window inside an event longer than it to count as holding the event."""
    events = [(0.1 * i + 0.013 * i, 0.1 * i + 0.013 * i + 1.0 + 0.07 * i) for i in range(1, 9)]  # 1.07 .. 1.56 s
    examples = [sf.train_example(f"r{i}", 0, species=4, t_min=a, t_max=b, audio=sf.ramp(SLICE), sample_rate=RATE,
                                 row_index=i) for i, (a, b) in enumerate(events)]
    other = sf.train_example("o", 1, species=1, t_min=0.5, t_max=0.7, audio=sf.ramp(SLICE), sample_rate=RATE)
    shards = sf.write_shards(str(tmp_path), {0: examples, 1: [other]}, sample_rate=RATE)
    cfg = small_config(min_box_overlap=1.0)
    examples = list(inputs.eval_examples(discovery.prepare_fold(shards, 0, cfg).val_files, cfg).as_numpy_iterator())
    meta = {"y": np.stack([ex["y"] for ex in examples])}
    assert len(meta["y"]) == len(events)
    np.testing.assert_array_equal(meta["y"][:, 4], 1.0)
    np.testing.assert_array_equal(meta["y"][:, C + 4], 1.0)


def test_keep_probabilities_thin_each_species_by_its_count_relative_to_the_rarest():
    # (n / 1)^-0.5; a species without slices keeps everything (it is never drawn anyway).
    np.testing.assert_allclose(inputs.keep_probabilities([1, 4, 16, 0], 0.5), [1.0, 0.5, 0.25, 1.0])
    np.testing.assert_allclose(inputs.keep_probabilities([2, 4, 16], 1.0), [1.0, 0.5, 0.125])
    np.testing.assert_allclose(inputs.keep_probabilities([2, 4, 16], 0.0), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("power, rare_share", [(0.0, 1 / 17), (0.5, 1 / 5), (1.0, 1 / 2)])
def test_class_balance_resamples_the_tp_draws_towards_rare_species(tmp_path, power, rare_share):
    # Training fold 1: 16 tp slices of species 3 and one of species 7; fold 0 (validation) never drawn.
    audio = sf.ramp(SLICE)
    common = [sf.train_example(f"c{i}", 1, species=3, t_min=0.5, t_max=1.0, audio=audio) for i in range(16)]
    rare = [sf.train_example("r0", 1, species=7, t_min=0.5, t_max=1.0, audio=audio)]
    val = [sf.train_example("v0", 0, species=3, t_min=0.5, t_max=1.0, audio=audio)]
    shards = sf.write_shards(str(tmp_path), {0: val, 1: common + rare})
    cfg = small_config(negative_fraction=0.0, class_balance=power)
    files = discovery.train_files_by_kind(discovery.read_manifest(shards), shards, 0)
    counts = [0] * C
    counts[3], counts[7] = 16, 1
    n = 3000
    spec = {"event/species_id": tf.io.FixedLenFeature([], tf.int64)}
    species = [int(tf.io.parse_single_example(r, spec)["event/species_id"])
               for r in inputs.training_draws(files, cfg, 0, species_counts=counts).take(n)]
    assert set(species) <= {3, 7}
    rare_draws = species.count(7)
    # Binomial(n, target share of the rare species): 4.5 standard deviations either side.
    assert abs(rare_draws - rare_share * n) <= 4.5 * np.sqrt(n * rare_share * (1 - rare_share)), rare_draws


def test_class_balance_needs_the_manifests_per_species_counts(shards):
    # The hand-made manifest has no counts.train_examples_per_species (an older job's would not either).
    with pytest.raises(discovery.ShardsError, match="class_balance needs the tp slices per species"):
        discovery.prepare_fold(shards, 0, small_config(class_balance=0.5))
    with pytest.raises(ValueError, match="class_balance needs"):
        inputs.training_draws(discovery.prepare_fold(shards, 0, small_config()).train_files_by_kind,
                              small_config(class_balance=0.5), 0)
