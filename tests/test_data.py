"""trainer.data on hand-made shards (tests/shard_factory.py): fold split, shapes, labels, crops, seeding, errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pipeline.errors import run_main
from tests import shard_factory as sf
from trainer import augment, config, data, train

RATE = 16000
SLICE = 32000  # 2 s
WINDOW = 16000  # 1 s
# 1 s windows of 16 kHz audio: mel 32 x (1 + 16000 // 256) = 32 x 63.
SMALL = {"window_seconds": 1.0, "batch_size": 4, "epochs": 2, "dense_units": 16,
         "mel": {"sample_rate": RATE, "n_fft": 512, "hop_length": 256, "n_mels": 32, "fmax": 8000.0}}
SMALL_FLAGS = ["--preset", "tiny", "--config", "SMALL"]  # "SMALL" is replaced by a JSON file of SMALL


def small_cfg(**overrides) -> config.TrainConfig:
    return config.apply_overrides(config.apply_overrides(config.TrainConfig(), SMALL), overrides)


# Fold 0 (the validation fold in most tests): events near the start, in the middle, near the end of
# the slice, and a slice shorter than the window. (t_min, t_max) in seconds.
VAL_EVENTS = [(0.1, 0.2), (0.9, 1.1), (1.8, 1.95)]


def _folds(num_folds: int = 3, per_fold: int = 4) -> dict[int, list[dict]]:
    """Fold k holds examples of species k only (so a label reveals the fold), ramp audio."""
    by_fold: dict[int, list[dict]] = {}
    for k in range(num_folds):
        events = VAL_EVENTS if k == 0 else [(0.2 + 0.3 * i, 0.5 + 0.3 * i) for i in range(per_fold)]
        by_fold[k] = [sf.train_example(f"rec{k}_{i}", k, species=k, t_min=a, t_max=b, audio=sf.ramp(SLICE),
                                       sample_rate=RATE, row_index=10 * k + i) for i, (a, b) in enumerate(events)]
    short = sf.ramp(12000)  # 0.75 s: shorter than the window, padded at the end
    by_fold[0].append(sf.train_example("short", 0, species=0, t_min=0.2, t_max=0.4, audio=short,
                                       sample_rate=RATE, row_index=99))
    return by_fold


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return sf.write_shards(str(tmp_path_factory.mktemp("shards")), _folds(), sample_rate=RATE, slice_seconds=2.0,
                           files_per_fold=2)


def _expected_centred_offset(n: int, t_min: float, t_max: float) -> int:
    centre = (t_min + t_max) / 2 * RATE
    return int(min(max(round(centre - WINDOW / 2), 0), max(n - WINDOW, 0)))


def test_prepare_fold_splits_files_by_fold_and_counts_examples(shards):
    inputs = data.prepare_fold(shards, 0, small_cfg())
    assert all("/fold-0/" in f for f in inputs.val_files) and len(inputs.val_files) == 2
    assert all("/fold-0/" not in f for f in inputs.train_files) and len(inputs.train_files) == 4
    assert (inputs.num_train, inputs.num_val) == (8, 4)


def test_training_batches_have_model_shapes_and_never_the_validation_fold(shards):
    cfg = small_cfg()
    inputs = data.prepare_fold(shards, 1, cfg)
    batches = list(data.train_dataset(inputs.train_files, cfg, global_batch=4).as_numpy_iterator())
    # 8 train examples (folds 0 and 2) per epoch, 2 epochs, batches of 4.
    assert len(batches) == 4
    for x, y in batches:
        assert x.shape == (4, 32, 1 + WINDOW // 256, 1) and x.dtype == np.float32
        assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
        assert y.shape == (4, 24)
    labels = np.concatenate([y for _, y in batches])
    assert (labels.sum(axis=1) == 1).all()
    assert labels[:, 1].sum() == 0  # fold 1 is validation
    assert labels[:, 0].sum() == 2 * 4 and labels[:, 2].sum() == 2 * 4  # every train example once per epoch


def test_validation_is_fold_k_only_with_crops_centred_on_the_event(shards):
    cfg = small_cfg()
    inputs = data.prepare_fold(shards, 0, cfg)
    examples = list(data.eval_examples(inputs.val_files, cfg).as_numpy_iterator())
    assert len(examples) == inputs.num_val == 4
    by_row = {int(ex["row_index"]): ex for ex in examples}
    for i, (t_min, t_max) in enumerate(VAL_EVENTS):
        ex = by_row[i]
        offset = _expected_centred_offset(SLICE, t_min, t_max)
        np.testing.assert_array_equal(ex["waveform"], sf.ramp(SLICE)[offset:offset + WINDOW] / 32768.0)
        assert int(ex["offset"]) == offset and int(ex["fold"]) == 0
    assert [_expected_centred_offset(SLICE, *e) for e in VAL_EVENTS] == [0, 8000, 16000]  # start, middle, end
    short = by_row[99]["waveform"]
    np.testing.assert_array_equal(short, np.concatenate([sf.ramp(12000), np.zeros(4000)]) / 32768.0)
    x, y = next(iter(data.eval_dataset(inputs.val_files, cfg, batch_size=8, num_examples=inputs.num_val)))
    assert x.shape == (4, 32, 63, 1) and (y.numpy()[:, 0] == 1).all() and y.numpy()[:, 1:].sum() == 0
    meta = data.eval_metadata(inputs.val_files, cfg)
    assert sorted(meta["row_index"]) == [0, 1, 2, 99] and set(meta["fold"]) == {0}
    assert [m for m in meta["recording_id"]] == [ex["recording_id"].decode() for ex in examples]


def test_labels_multi_hot_for_sigmoid_and_one_hot_for_softmax(tmp_path):
    ex = sf.train_example("r", 0, species=3, t_min=0.5, t_max=0.7, audio=sf.ramp(SLICE), sample_rate=RATE,
                          extra_species=[7])
    other = sf.train_example("o", 1, species=1, t_min=0.5, t_max=0.7, audio=sf.ramp(SLICE), sample_rate=RATE)
    shards = sf.write_shards(str(tmp_path), {0: [ex], 1: [other]}, sample_rate=RATE)
    for loss, positives in (("sigmoid", {3, 7}), ("softmax", {3})):
        cfg = small_cfg(loss=loss)
        label = next(iter(data.eval_examples(data.prepare_fold(shards, 0, cfg).val_files, cfg)))["label"].numpy()
        assert set(np.flatnonzero(label)) == positives and label.sum() == len(positives)


def test_training_crop_keeps_the_event_inside_with_both_bounds_reachable():
    def draws(start, end, n=40000, count=300):
        return np.array([int(data.crop_offset(tf.constant(n, tf.int64), WINDOW, tf.constant(start),
                                              tf.constant(end), tf.constant([5, i], tf.int64)))
                         for i in range(count)])

    # The window holds [20000, 35998] iff 19998 <= offset <= 20000: exactly three offsets.
    assert set(draws(20000.0, 35998.0)) == {19998, 19999, 20000}
    # An event longer than the window: the window stays inside the event.
    long = draws(1000.0, 30000.0)
    assert long.min() >= 1000 and (long + WINDOW).max() <= 30000 and len(set(long)) > 100
    # Near the slice start, offsets are clipped at 0 but still cover the event.
    early = draws(10.0, 900.0)
    assert set(early) == set(range(11))
    # A slice shorter than the window: offset 0 (the crop pads).
    assert set(draws(100.0, 900.0, n=12000, count=20)) == {0}


def test_training_stream_is_reproducible_for_a_seed_and_changes_with_it(shards):
    cfg = small_cfg()
    files = data.prepare_fold(shards, 0, cfg).train_files

    def first_batches(c):
        return [x for x, _ in data.train_dataset(files, c, global_batch=4).take(2).as_numpy_iterator()]

    a, b, other = first_batches(cfg), first_batches(cfg), first_batches(small_cfg(seed=1))
    for xa, xb in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a[0], other[0])


def test_augmentation_hands_its_pitch_steps_to_the_mel_front_end():
    cfg = small_cfg(augment={"noise_p": 0.0, "time_shift_p": 0.0, "volume_p": 0.0})  # only the pitch shift
    augment_fn, max_steps = data._augment_fn(cfg)
    assert max_steps == cfg.augment.pitch_shift_max_steps == 5
    reference = augment.build_augmentation(cfg.augment, RATE, cfg.seed)
    waveform = tf.constant(sf.ramp(WINDOW) / 32768.0, tf.float32)
    drawn = set()
    for i in range(12):
        seed = tf.constant([3, i], tf.int64)
        out, steps = augment_fn(waveform, seed)
        np.testing.assert_array_equal(out.numpy(), waveform.numpy())  # the waveform is not shifted...
        assert int(steps) == augment.augment_with_seed(reference, waveform.numpy(), seed.numpy())[1]  # ...the mel is
        drawn.add(int(steps))
    assert len(drawn) > 3
    off_fn, off_steps = data._augment_fn(small_cfg(augment={"enabled": False}))
    assert off_fn(waveform, tf.constant([3, 0], tf.int64))[1] is None and off_steps == 0


def _train_argv(shards_dir: str, run_dir: str, cfg_file: str, fold: int = 0, *extra: str) -> list[str]:
    return ["--shards_dir", shards_dir, "--fold", str(fold), "--run_dir", run_dir, "--config", cfg_file, *extra]


def _corrupt(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(30)
        f.write(b"\xff" * 8)  # inside the first record's payload: its CRC no longer matches


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)


def _bad_shards(kind: str, base: str) -> tuple[str, list[str], str]:
    """(shards dir, extra flags, expected message part) for one kind of bad input."""
    shards = os.path.join(base, "shards")
    if kind == "missing_dir":
        return shards, [], f"shards dir {shards} does not exist"
    if kind == "empty_dir":
        os.makedirs(shards)
        return shards, [], "has no manifest.json"
    folds = _folds()
    if kind == "fold_without_shards":
        folds[2] = []
    sf.write_shards(shards, folds, sample_rate=RATE, slice_seconds=2.0,
                    manifest_version=99 if kind == "manifest_version" else 1)
    shard = os.path.join(shards, "train", "fold-1", "train-00000-of-00001.tfrecord")
    if kind == "unknown_fold":
        return shards, ["--fold", "7"], "unknown fold 7"
    if kind == "fold_without_shards":
        return shards, ["--fold", "2"], ("no shard for fold 2 (no examples fell into it); "
                                         "folds with shards: 0 (4 examples), 1 (4 examples)")
    if kind == "manifest_version":
        return shards, [], "written with schema version 99"
    if kind == "record_version":
        ex = sf.train_example("v", 1, species=1, t_min=0.2, t_max=0.4, audio=sf.ramp(SLICE), sample_rate=RATE,
                              version=2)
        sf.write_records(shard, [ex])
        return shards, [], f"shard {shard} was written with schema version 2"
    if kind == "corrupt_record":
        _corrupt(shard)
        return shards, [], f"shard {shard} is corrupt"
    if kind == "truncated_file":
        _truncate(shard)
        return shards, [], f"shard {shard} is corrupt"
    if kind == "window_longer_than_slice":
        return shards, ["--window_seconds", "3"], "window_seconds=3.0 is longer than the 2.0 s slices"
    if kind == "sample_rate":
        return shards, ["--mel.sample_rate", "22050", "--mel.fmax", "8000"], "holds 16000 Hz audio"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing_dir", "empty_dir", "unknown_fold", "fold_without_shards",
                                  "manifest_version", "record_version", "corrupt_record", "truncated_file",
                                  "window_longer_than_slice", "sample_rate"])
def test_bad_input_exits_2_with_one_clear_line(kind, tmp_path, capsys):
    shards, extra, expected = _bad_shards(kind, str(tmp_path))
    cfg_file = tmp_path / "small.json"
    cfg_file.write_text(json.dumps(SMALL))
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        run_main(train.main, _train_argv(shards, str(run_dir), str(cfg_file), 0, *extra))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not run_dir.exists()  # nothing is written before the inputs are checked


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object"),
    (json.dumps({"schema_version": 1, "files": {}}), "lacks counts"),
])
def test_manifest_of_the_wrong_shape_is_a_shards_error(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(data.ShardsError, match=message):
        data.read_manifest(str(tmp_path))
