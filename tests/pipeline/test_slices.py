"""tp, fp and background slices of one recording (pipeline.examples / core.crop), on hand-built cases.

Expected slice positions, labels and known masks are worked out by hand in each test from the box
times; overlap is recomputed here from its definition (a positive-length shared stretch), not with
the pipeline's helper.
"""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from core import crop, schema
from pipeline import examples, labels
from pipeline.config import ShardsConfig
from tests.helpers.common import csv_rows, flac_bytes
from trainer.data import records

SR = 16000
SLICE_S = 2.0
L = int(SLICE_S * SR)
CFG = ShardsConfig("d", "o", sample_rate=SR, slice_seconds=SLICE_S, num_classes=10, fold_seed=27)


def _flac(seconds: float, seed: int = 0) -> bytes:
    return flac_bytes(np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.05, SR)


_rows = csv_rows


def _parse(ex: examples.BuiltExample) -> dict:
    parsed = tf.io.parse_single_example(ex.serialized, records.train_parse_spec(CFG.num_classes))
    return {k: (tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy())
            for k, v in parsed.items()}


def _hot(*species: int) -> list[float]:
    v = [0.0] * CFG.num_classes
    for s in species:
        v[s] = 1.0
    return v


def _shares_time(box: tuple[float, float], start: int, n: int) -> bool:
    """Whether box (t_min, t_max) s and samples [start, start + n) share a positive-length stretch."""
    return box[0] * SR < start + n and box[1] * SR > start


# 10 s recording. tp: species 3 at 1.0-1.5 s, species 5 at 9.5-9.9 s (near the end).
# fp: species 3 at 1.6-1.8 s (the same species as a tp box close by), species 7 at 0.0-0.2 s (start).
TP = ((3, 1.0, 1.5), (5, 9.5, 9.9))
FP = ((3, 1.6, 1.8), (7, 0.0, 0.2))


def _task(rid="rec", num_background=2, tp=TP, fp=FP, fold=1):
    return examples.RecordingTask(examples.TRAIN, rid, f"{rid}.flac", fold,
                                  _rows("tp", rid, *tp) + _rows("fp", rid, *fp), num_background)


@pytest.fixture(scope="module")
def ten_seconds() -> bytes:
    return _flac(10.0)


def test_tp_and_fp_slices_labels_known_and_clamping(ten_seconds):
    out = examples.process_train(_task(num_background=0), lambda: ten_seconds, CFG)
    assert out.rejections == []
    got = {(e.kind, int(p["row_index"])): p for e, p in ((e, _parse(e)) for e in out.examples)}
    assert sorted(got) == [("fp", 0), ("fp", 1), ("tp", 0), ("tp", 1)]
    want = {
        # (slice start in samples, labels, known). tp 3: centred on 1.25 s -> [0.25, 2.25) s, which
        # also holds fp 3 at 1.6-1.8: species 3 has a tp and an fp box there, so it is positive.
        ("tp", 0): (int(0.25 * SR), _hot(3), _hot(3)),
        # tp 5: centred on 9.7 s would end past 10 s: clamped to the last 2 s [8, 10).
        ("tp", 1): (8 * SR, _hot(5), _hot(5)),
        # fp 3: [0.7, 2.7) s holds tp 3 (1.0-1.5): positive for 3 although the slice was cut for an fp.
        ("fp", 0): (int(0.7 * SR), _hot(3), _hot(3)),
        # fp 7: centred on 0.1 s, clamped to [0, 2) s; holds fp 7, tp 3 and fp 3.
        ("fp", 1): (0, _hot(3), _hot(3, 7)),
    }
    for key, (start, positive, known) in want.items():
        p = got[key]
        assert int(p["slice_start"]) == start, key
        assert (int(p["num_samples"]), int(p["recording_num_samples"])) == (L, 10 * SR)
        assert p["labels"].tolist() == positive and p["label_known"].tolist() == known, key
        assert p["kind"].decode() == key[0] and int(p["fold"]) == 1
    fp7 = got[("fp", 1)]
    assert (int(fp7["event/species_id"]), fp7["event/t_min"], fp7["event/t_max"]) == (7, 0.0, pytest.approx(0.2))
    assert sorted(zip(fp7["boxes/species_id"].tolist(), fp7["boxes/is_tp"].tolist())) == [(3, 0), (3, 1), (7, 0)]
    assert [e.species_id for e in out.examples if e.kind == "fp"] == [3, 7]


def test_background_slices_overlap_no_tp_box(ten_seconds):
    out = examples.process_train(_task(num_background=6), lambda: ten_seconds, CFG)
    bg = [_parse(e) for e in out.examples if e.kind == schema.KIND_BACKGROUND]
    assert len(bg) == 6 and out.rejections == []
    starts = [int(p["slice_start"]) for p in bg]
    assert len(set(starts)) == 6
    for p in bg:
        start = int(p["slice_start"])
        assert 0 <= start and start + L <= 10 * SR and int(p["num_samples"]) == L
        assert not any(_shares_time((a, b), start, L) for _, a, b in TP)
        assert p["labels"].tolist() == [0.0] * CFG.num_classes
        assert p["label_known"].tolist() == _hot(*[s for s, a, b in FP if _shares_time((a, b), start, L)])
        assert (int(p["row_index"]), int(p["event/species_id"]), int(p["event/songtype_id"])) == (-1, -1, -1)
        assert (p["event/t_min"], p["event/t_max"], p["event/f_min"], p["event/f_max"]) == (0.0, SLICE_S, 0.0, 0.0)
        assert p["kind"] == b"background"
        np.testing.assert_array_equal(schema.pcm16_to_numpy(p["audio"]),
                                      sf.read(io.BytesIO(ten_seconds), dtype="int16")[0][start:start + L])


def _background_starts(task, data, cfg=CFG) -> list[int]:
    out = examples.process_train(task, lambda: data, cfg)
    return [int(_parse(e)["slice_start"]) for e in out.examples if e.kind == schema.KIND_BACKGROUND]


def test_background_is_deterministic_per_seed_and_recording(ten_seconds):
    first = _background_starts(_task(), ten_seconds)
    assert len(first) == 2 and _background_starts(_task(), ten_seconds) == first
    other_seed = ShardsConfig("d", "o", sample_rate=SR, slice_seconds=SLICE_S, num_classes=10, fold_seed=28)
    assert _background_starts(_task(), ten_seconds, other_seed) != first
    assert _background_starts(_task(rid="rec2"), ten_seconds) != first


def test_background_draw_does_not_depend_on_the_process():
    """Workers are separate processes with their own str hash salt: the draw must not use hash()."""
    code = ("from core import crop; "
            "print(crop.draw_starts([(0, 10**6)], 3, crop.background_rng(27, 'a1b2c3d4e')))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def test_unplaceable_background_and_bad_rows_are_dead_letters_that_add_up():
    # 3 s recording, 2 s slices: tp boxes at 0.9-1.1 and 2.0-2.2 s block every window start.
    data = _flac(3.0)
    tp = ((1, 0.9, 1.1), (2, 2.0, 2.2), (30, 0.1, 0.2))  # the last: species out of range
    fp = ((4, 0.5, 0.6), (5, 2.5, 3.5), (6, 1.0, 0.5))  # outside the recording; t_min after t_max
    task = _task(rid="full", num_background=2, tp=tp, fp=fp)
    out = examples.process_train(task, lambda: data, CFG)
    kinds = [e.kind for e in out.examples]
    rejected = sorted((r.kind, r.reason) for r in out.rejections)
    assert rejected == [("background", examples.NO_ROOM_FOR_BACKGROUND)] * 2 + [
        ("fp", labels.EVENT_OUTSIDE_RECORDING), ("fp", labels.T_MIN_NOT_BEFORE_T_MAX),
        ("tp", labels.SPECIES_OUT_OF_RANGE)]
    for kind, inputs in (("tp", len(tp)), ("fp", len(fp)), ("background", task.num_background)):
        assert kinds.count(kind) + sum(r.kind == kind for r in out.rejections) == inputs
    assert all("overlap none" in r.detail for r in out.rejections if r.kind == "background")


def test_bad_file_rejects_rows_and_background_with_its_reason(ten_seconds):
    truncated = ten_seconds[:len(ten_seconds) // 3]
    out = examples.process_train(_task(num_background=2), lambda: truncated, CFG)
    assert out.examples == [] and out.file_error.reason == "truncated_flac"
    assert sorted((r.kind, r.reason) for r in out.rejections) == sorted(
        [("tp", "truncated_flac")] * 2 + [("fp", "truncated_flac")] * 2 + [("background", "truncated_flac")] * 2)


def test_fp_only_recording_gets_fp_and_background_slices(ten_seconds):
    task = _task(tp=(), fp=((2, 4.0, 4.5),), num_background=2)
    out = examples.process_train(task, lambda: ten_seconds, CFG)
    assert sorted(e.kind for e in out.examples) == ["background", "background", "fp"]
    fp = _parse(next(e for e in out.examples if e.kind == "fp"))
    assert fp["labels"].tolist() == [0.0] * 10 and fp["label_known"].tolist() == _hot(2)


def test_no_valid_row_and_no_background_reads_nothing():
    task = _task(rid="", tp=((30, 0.1, 0.2),), fp=(), num_background=0)

    def load():
        raise AssertionError("the audio was read")

    out = examples.process_train(task, load, CFG)
    assert [r.reason for r in out.rejections] == [labels.MISSING_RECORDING_ID]


# ---- crop: free starts and draws ----

def test_free_starts_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sr, n, length = int(rng.integers(10, 200)), int(rng.integers(1, 400)), int(rng.integers(1, 200))
        boxes = [tuple(sorted(rng.uniform(0, n / sr, 2))) for _ in range(int(rng.integers(0, 4)))]
        free = {s for lo, hi in crop.free_starts(n, length, sr, boxes) for s in range(lo, hi)}
        w = min(length, n)
        exact = {s for s in range(n - w + 1) if not any(_overlap_s(b, s / sr, (s + w) / sr) for b in boxes)}
        assert free <= exact  # sound: a free window never touches a box
        # and at most one sample per side more cautious than exact
        assert all(min(abs(s - t) for t in set(range(n - w + 1)) - exact) <= 1 for s in exact - free)


def _overlap_s(box, start_s, end_s):
    return box[0] < end_s and box[1] > start_s


def test_draw_starts_distinct_sorted_and_inside():
    free = [(5, 8), (20, 21), (30, 40)]
    rng = np.random.default_rng(3)
    inside = {s for lo, hi in free for s in range(lo, hi)}
    for count in (1, 5, 14):
        got = crop.draw_starts(free, count, rng)
        assert got == sorted(set(got)) and len(got) == count and set(got) <= inside
    assert crop.draw_starts(free, 20, rng) == sorted(inside)  # fewer free starts than asked: all of them
    assert crop.draw_starts([], 2, rng) == []
    # Every free start can be drawn (the index -> start mapping covers each range).
    seen = set()
    for _ in range(300):
        seen.update(crop.draw_starts(free, 2, rng))
    assert seen == inside
