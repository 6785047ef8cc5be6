"""The per-recording DoFn: called directly, and inside a real TestPipeline checked with assert_that."""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import examples, transforms
from pipeline.config import ShardsConfig
from tests.helpers.common import csv_rows

SR = 48000


_rows = csv_rows


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """Three train recordings and a test file, with 2 background slices asked of each train recording.

    good (3 s): 2 valid + 1 bad tp rows, 1 fp row; its tp boxes leave no room for a 1 s background
    slice. gone: missing file. roomy (3 s): a tp and an fp box of species 5 in one slice, room for
    background. test: a test recording.
    """
    d = tmp_path_factory.mktemp("dofn")
    y = (np.random.default_rng(0).standard_normal(3 * SR) * 0.1).astype(np.float32)
    sf.write(str(d / "good.flac"), y, SR, subtype="PCM_16")
    sf.write(str(d / "roomy.flac"), y[::-1], SR, subtype="PCM_16")
    sf.write(str(d / "test.flac"), y[:SR], SR, subtype="PCM_16")
    good_rows = _rows("tp", "good", (1, 0.5, 1.0), (2, 2.0, 2.5), (30, 0.1, 0.2)) + _rows("fp", "good", (3, 0.6, 0.7))
    roomy_rows = _rows("tp", "roomy", (5, 0.1, 0.3)) + _rows("fp", "roomy", (5, 0.2, 0.4))
    return [
        examples.RecordingTask(examples.TRAIN, "good", str(d / "good.flac"), 1, good_rows, 2),
        examples.RecordingTask(examples.TRAIN, "gone", str(d / "gone.flac"), 0, _rows("tp", "gone", (4, 1.0, 2.0)), 2),
        examples.RecordingTask(examples.TRAIN, "roomy", str(d / "roomy.flac"), 0, roomy_rows, 2),
        examples.RecordingTask(examples.TEST, "test", str(d / "test.flac")),
    ]


CFG = ShardsConfig("unused", "unused", num_folds=2, slice_seconds=1.0)


def test_dofn_called_directly(tasks):
    dofn = transforms.ProcessRecording(CFG)
    dofn.setup()
    out = list(dofn.process(tasks[0]))
    train = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    rejected = [json.loads(o.value) for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [key for key, _ in train] == [(1, "tp"), (1, "tp"), (1, "fp")]
    assert [(r["kind"], r["row_index"], r["reason"]) for r in rejected] == [
        ("tp", 2, "species_out_of_range"), ("background", None, "no_room_for_background"),
        ("background", None, "no_room_for_background")]
    assert all(o.tag == transforms.REJECTED_TAG for o in out if isinstance(o, beam.pvalue.TaggedOutput))


def _reason(line: str) -> tuple:
    r = json.loads(line)
    return r["kind"], r["recording_id"], r["reason"]


def test_destinations_one_per_fold_and_kind_then_test():
    cfg = ShardsConfig("in", "out", num_folds=2)
    got = transforms.shard_destinations(cfg, "out")
    assert {key: d.prefix for key, d in got.items()} == {
        **{(fold, kind): f"out/train/fold-{fold}/{kind}" for fold in (0, 1) for kind in ("tp", "fp", "background")},
        (examples.NO_FOLD, examples.TEST): "out/test/test"}
    assert got[(0, "tp")].max_bytes == cfg.max_train_fill_bytes
    assert got[(examples.NO_FOLD, examples.TEST)].max_bytes == cfg.max_test_fill_bytes


def test_dofn_in_test_pipeline(tasks):
    with test_pipeline.TestPipeline() as p:
        outs = (p | beam.Create(tasks)
                | beam.ParDo(transforms.ProcessRecording(CFG)).with_outputs(
                    transforms.REJECTED_TAG, main=transforms.EXAMPLES_TAG))
        assert_that(outs[transforms.EXAMPLES_TAG] | "Keys" >> beam.Keys(),
                    equal_to([(1, "tp"), (1, "tp"), (1, "fp"), (0, "tp"), (0, "fp"), (0, "background"),
                              (0, "background"), (examples.NO_FOLD, examples.TEST)]), label="ExampleKeys")
        assert_that(outs[transforms.REJECTED_TAG] | "Reasons" >> beam.Map(_reason),
                    equal_to([("tp", "good", "species_out_of_range"), ("tp", "gone", "missing_flac"),
                              ("background", "good", "no_room_for_background"),
                              ("background", "good", "no_room_for_background"),
                              ("background", "gone", "missing_flac"), ("background", "gone", "missing_flac")]),
                    label="Rejected")
    counters = {c.key.metric.name: c.committed
                for c in p.result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]}
    assert counters["train_examples"] == 7 and counters["test_examples"] == 1
    assert (counters["train_examples_tp"], counters["train_examples_fp"], counters["train_examples_background"]) == (
        3, 2, 2)
    assert counters["rejected_tp_missing_flac"] == 1 and counters["bad_file_missing_flac"] == 1
    assert counters["rejected_background_missing_flac"] == 2
    assert counters["rejected_background_no_room_for_background"] == 2
    assert counters["train_examples_fold_1"] == 3 and counters["train_examples_fold_0_background"] == 2
    assert counters["train_examples_species_2"] == 1 and counters["fp_examples_species_5"] == 1
