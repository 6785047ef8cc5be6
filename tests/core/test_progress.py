"""core.progress: periodic done/total, rate and ETA lines, in the log of the jobs that use it.

A fake clock drives the interval (no timed test). trainer.inference.predict's line is checked in
tests/trainer/inference/test_timelines.py; the baseline's (through trainer.baseline.band_features) here.
"""
from __future__ import annotations

import io

from core import progress
from tests.helpers.common import FakeClock


def test_lines_at_the_interval_with_rate_and_eta():
    clock, out = FakeClock(100.0), io.StringIO()
    line = progress.Progress("scoring", total=8, every_seconds=10.0, stream=out, clock=clock)
    for done, now in ((1, 104.0), (2, 110.0), (3, 115.0), (4, 120.0)):
        clock.now = now
        line.update(done)
    clock.now = 140.0
    line.update(8, final=True)
    assert out.getvalue().splitlines() == [
        "scoring: 2/8 recordings, 0.2/s, 10 s elapsed, ETA 30 s",  # 10 s for 2: 6 more take 30 s
        "scoring: 4/8 recordings, 0.2/s, 20 s elapsed, ETA 20 s",
        "scoring: 8/8 recordings, 0.2/s, 40 s elapsed",
    ]


def test_over_yields_everything_and_ends_with_a_final_line():
    out = io.StringIO()
    items = list(progress.over(iter("abc"), "reading", total=None, every_seconds=1e9, unit="slices", stream=out))
    assert items == ["a", "b", "c"]
    assert out.getvalue().splitlines()[-1].startswith("reading: 3 slices, ")


def test_durations_read_as_minutes_and_hours():
    assert progress.duration(59.4) == "59 s"
    assert progress.duration(185) == "3 min 05 s"
    assert progress.duration(7320) == "2 h 02 min"


def test_baseline_test_pass_logs_progress(tiny_shards, capsys):
    from trainer.baseline import band_features
    from trainer.data.discovery import read_manifest
    from trainer.features import mel

    manifest = read_manifest(tiny_shards)
    stats = band_features.BandStats(mel.MelConfig(scaling="db", n_mels=16), window=48000, batch_size=8)
    ids, _, _ = band_features.read_test_windows(tiny_shards, manifest, stats, stride=24000)
    log = capsys.readouterr().out
    assert f"reading test recordings: {len(ids)}/{len(ids)} recordings, " in log
    assert "/s, " in log  # the rate


def test_the_final_line_is_not_repeated_when_the_last_count_was_just_printed():
    clock, out = FakeClock(100.0), io.StringIO()
    line = progress.Progress("scoring", total=2, every_seconds=10.0, stream=out, clock=clock)
    clock.now = 111.0
    line.update(2)  # due by the interval
    line.update(2, final=True)
    assert out.getvalue().splitlines() == ["scoring: 2/2 recordings, 0.182/s, 11 s elapsed"]
