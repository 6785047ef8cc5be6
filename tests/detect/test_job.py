"""The detection job (DirectRunner) over generated recordings of mixed formats, rates, lengths and channel
counts, with a tiny fake export: its window scores against the SavedModel scoring core.windows' cut of the
independently resampled audio, its tables against its window scores, its dead letters and counts."""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core import raven
from detect import transforms
from tests.detect import reference

THRESHOLD = 0.5
SAMPLE_RATE, WINDOW = 8000, 4000  # the fake export's


def part(out: str, rid: str) -> pd.DataFrame:
    return pq.read_table(os.path.join(out, "windows", rid + ".parquet")).to_pandas()


def counters(result) -> dict[str, int]:
    from detect.run import read_counters

    return read_counters(result)


def test_every_listed_file_is_scored_or_a_dead_letter_with_its_reason(detect_run, field_audio):
    out, result = detect_run
    _, good, bad = field_audio
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert (summary["listed"], summary["scored"], summary["rejected"]) == (len(good) + len(bad), len(good), len(bad))
    assert summary["rejected_by_reason"] == dict(collections.Counter(bad.values()))
    assert summary["ignored_files"] == 1  # notes.txt
    letters = [json.loads(line) for name in os.listdir(os.path.join(out, "rejected"))
               for line in open(os.path.join(out, "rejected", name))]
    assert {d["recording_id"]: d["reason"] for d in letters} == bad
    assert all(d["detail"] for d in letters)
    c = counters(result)
    assert c[transforms.SCORED] == len(good) and c[transforms.REJECTED_COUNT] == len(bad)
    assert {k: v for k, v in c.items() if k.startswith("rejected_")} == {
        f"rejected_{r}": n for r, n in collections.Counter(bad.values()).items()}
    parts = sorted(os.path.relpath(os.path.join(d, f), os.path.join(out, "windows"))[:-len(".parquet")]
                   for d, _, files in os.walk(os.path.join(out, "windows")) for f in files)
    assert parts == sorted(good)


def test_window_scores_equal_the_saved_model_on_the_cut_of_the_resampled_audio(detect_run, field_audio, fake_export):
    out, _ = detect_run
    for rid, path in field_audio[1].items():
        starts, scores, embeddings = reference.window_scores(fake_export, path)
        got = part(out, rid)
        assert list(got["recording_id"]) == [rid] * len(starts)
        np.testing.assert_allclose(got["start_s"], starts / SAMPLE_RATE)
        # The job decodes to 16-bit as the shards job does; the reference keeps float: quantization noise only.
        np.testing.assert_allclose(np.stack(got["scores"]), scores, atol=2e-4, err_msg=rid)
        np.testing.assert_allclose(np.stack(got["embeddings"]), embeddings, atol=2e-3, rtol=1e-3, err_msg=rid)


def test_a_recording_shorter_than_a_window_is_one_window_ending_at_its_end(detect_run):
    got = part(detect_run[0], "short_11k")
    assert len(got) == 1
    assert got["start_s"][0] == 0.0 and abs(got["end_s"][0] - 0.2) < 1e-3


def test_windows_of_a_long_recording_end_at_its_end(detect_run):
    got = part(detect_run[0], "tone_8k")  # 3 s, window 0.5 s, stride 0.25 s
    np.testing.assert_allclose(got["start_s"], np.arange(0, 2.51, 0.25))
    assert got["end_s"].iloc[-1] == 3.0


def _expected_detections(out: str, ids) -> pd.DataFrame:
    rows = []
    for rid in ids:
        p = part(out, rid)
        for (_, w), scores in zip(p.iterrows(), p["scores"]):
            rows += [(rid, w["start_s"], w["end_s"], k, s) for k, s in enumerate(scores) if s >= THRESHOLD]
    return pd.DataFrame(rows, columns=["recording_id", "start_s", "end_s", "species_id", "score"])


def test_detections_are_the_windows_scoring_at_least_the_threshold(detect_run, field_audio):
    out, _ = detect_run
    got = pd.read_csv(os.path.join(out, "detections.csv"))
    expected = _expected_detections(out, field_audio[1])
    total = sum(len(part(out, rid)) * 3 for rid in field_audio[1])
    assert 0 < len(expected) < total  # the threshold keeps some windows x species and drops others
    key = ["recording_id", "start_s", "species_id"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True), check_dtype=False, atol=1e-6)


def test_raven_tables_parse_back_to_each_recordings_detections(detect_run, field_audio):
    out, _ = detect_run
    detections = pd.read_csv(os.path.join(out, "detections.csv"))
    for rid in field_audio[1]:
        with open(os.path.join(out, "raven", rid + ".txt")) as f:
            table = raven.parse_table(f.read(), where=rid)
        assert table.columns == raven.COLUMNS
        selections = raven.selections(table)
        mine = detections[detections.recording_id == rid].sort_values(["start_s", "species_id"])
        assert [(s.begin_s, s.end_s, s.species) for s in selections] == pytest_approx_rows(mine)
        assert [s.score for s in selections] == list(np.round(mine["score"], 6))
        assert all(s.low_hz == 0 and s.high_hz == SAMPLE_RATE / 2 and s.channel == 1 for s in selections)


def pytest_approx_rows(frame: pd.DataFrame) -> list:
    return [(round(a, 6), round(b, 6), f"s{k}") for a, b, k in zip(frame.start_s, frame.end_s, frame.species_id)]


def test_species_list_and_config_are_saved_beside_the_outputs(detect_run, fake_export):
    out, _ = detect_run
    assert open(os.path.join(out, "species.csv")).read() == "name,id\ns0,0\ns1,1\ns2,2\n"
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["model"] == fake_export and config["threshold"] == THRESHOLD and config["embeddings"] is True
