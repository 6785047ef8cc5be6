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

from pipeline import examples, labels, transforms
from pipeline.config import ShardsConfig

SR = 48000


def _rows(kind, rid, *boxes):
    return tuple(labels.CsvRow(kind, i, {"recording_id": rid, "species_id": str(s), "songtype_id": "1",
                                         "t_min": str(a), "f_min": "100", "t_max": str(b), "f_max": "900"})
                 for i, (s, a, b) in enumerate(boxes))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A good 3 s recording with 2 valid + 1 bad tp rows and 1 fp row, a missing one, a test file."""
    d = tmp_path_factory.mktemp("dofn")
    y = (np.random.default_rng(0).standard_normal(3 * SR) * 0.1).astype(np.float32)
    sf.write(str(d / "good.flac"), y, SR, subtype="PCM_16")
    sf.write(str(d / "test.flac"), y[:SR], SR, subtype="PCM_16")
    good_rows = _rows("tp", "good", (1, 0.5, 1.0), (2, 2.0, 2.5), (30, 0.1, 0.2)) + _rows("fp", "good", (3, 0.6, 0.7))
    return [
        examples.RecordingTask(examples.TRAIN, "good", str(d / "good.flac"), 1, good_rows),
        examples.RecordingTask(examples.TRAIN, "gone", str(d / "gone.flac"), 0, _rows("tp", "gone", (4, 1.0, 2.0))),
        examples.RecordingTask(examples.TEST, "test", str(d / "test.flac")),
    ]


CFG = ShardsConfig("unused", "unused", num_folds=2, slice_seconds=1.0)


def test_dofn_called_directly(tasks):
    dofn = transforms.ProcessRecording(CFG)
    dofn.setup()
    out = list(dofn.process(tasks[0]))
    train = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    rejected = [json.loads(o.value) for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert [fold for fold, _ in train] == [1, 1]
    assert [(r["kind"], r["row_index"], r["reason"]) for r in rejected] == [("tp", 2, "species_out_of_range")]
    assert all(o.tag == transforms.REJECTED_TAG for o in out if isinstance(o, beam.pvalue.TaggedOutput))


def _reason(line: str) -> tuple:
    r = json.loads(line)
    return r["kind"], r["recording_id"], r["reason"]


def test_dofn_in_test_pipeline(tasks):
    with test_pipeline.TestPipeline() as p:
        outs = (p | beam.Create(tasks)
                | beam.ParDo(transforms.ProcessRecording(CFG)).with_outputs(
                    transforms.REJECTED_TAG, main=transforms.EXAMPLES_TAG))
        assert_that(outs[transforms.EXAMPLES_TAG] | "Folds" >> beam.Keys(),
                    equal_to([1, 1, examples.NO_FOLD]), label="ExampleFolds")
        parts = outs[transforms.EXAMPLES_TAG] | beam.Partition(transforms.destination, CFG.num_folds + 1)
        assert_that(parts[CFG.num_folds] | "Count" >> beam.combiners.Count.Globally(), equal_to([1]),
                    label="TestPartition")
        assert_that(outs[transforms.REJECTED_TAG] | "Reasons" >> beam.Map(_reason),
                    equal_to([("tp", "good", "species_out_of_range"), ("tp", "gone", "missing_flac")]),
                    label="Rejected")
    counters = {c.key.metric.name: c.committed
                for c in p.result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]}
    assert counters["train_examples"] == 2 and counters["test_examples"] == 1
    assert counters["rejected_tp_missing_flac"] == 1 and counters["bad_file_missing_flac"] == 1
    assert counters["train_examples_fold_1"] == 2 and counters["train_examples_species_2"] == 1


def test_fp_only_recording_is_probed_not_decoded(tasks, tmp_path):
    # fp rows only: the stream's length (read, not kept) checks them; a cut-off stream is truncated,
    # whatever its header claims.
    good = open(tasks[0].path, "rb").read()
    rows = _rows("fp", "fponly", (1, 0.5, 1.0), (2, 2.0, 3.5))
    task = examples.RecordingTask(examples.TRAIN, "fponly", tasks[0].path, examples.NO_FOLD, rows)
    outcome = examples.process(task, lambda: good, CFG)
    assert outcome.audio is None and outcome.examples == []
    assert [(r.row_index, r.reason) for r in outcome.rejections] == [(1, labels.EVENT_OUTSIDE_RECORDING)]
    outcome = examples.process(task, lambda: good[: len(good) // 2], CFG)
    assert [(r.row_index, r.reason) for r in outcome.rejections] == [(0, "truncated_flac"), (1, "truncated_flac")]
