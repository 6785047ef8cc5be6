"""core.progress: the reporter's lines on a fake clock, and the lines of a real `python -m pipeline.shards` run."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from core import progress
from core.errors import UserError
from pipeline.config import parse_shards_args
from tests.conftest import TINY_NUM_TEST, TINY_NUM_TRAIN
from tests.helpers import common
from tests.helpers.common import FakeClock


def _steps(reporter: progress.ProgressReporter, clock: FakeClock, times: list[float]) -> list[str | None]:
    lines = []
    for t in times:
        clock.now = t
        lines.append(reporter.step())
    return lines


def test_lines_at_the_interval_with_rate_and_eta(caplog):
    clock = FakeClock()
    reporter = progress.ProgressReporter(total=5, interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER_NAME):
        lines = _steps(reporter, clock, [4, 10, 15, 20, 21])
    # t=10: 2 done in 10 s, 3 left at 0.2/s; t=15: 5 s since the last line, none; t=21: the last one, always.
    assert lines == [None,
                     "progress: 2/5 recordings (40%), 0.2 rec/s, ETA 15 s",
                     None,
                     "progress: 4/5 recordings (80%), 0.2 rec/s, ETA 5 s",
                     "progress: 5/5 recordings (100%), 0.2 rec/s, ETA 0 s"]
    assert [r.getMessage() for r in caplog.records if r.name == progress.LOGGER_NAME] == [l for l in lines if l]


def test_long_eta_and_interval_zero_is_off():
    clock = FakeClock()
    reporter = progress.ProgressReporter(total=1000, interval_s=30, clock=clock)
    # 10 done in 30 s: 990 left at 1/3 per second = 2970 s.
    assert _steps(reporter, clock, [1] * 9 + [30])[-1] == "progress: 10/1000 recordings (1%), 0.3 rec/s, ETA 49 min 30 s"
    off = progress.ProgressReporter(total=2, interval_s=0, clock=clock)
    assert _steps(off, clock, [100, 200]) == [None, None] and off.done == 2


def test_worker_process_says_it_counts_its_share():
    clock = FakeClock()
    reporter = progress.ProgressReporter(total=8, interval_s=5, clock=clock, processes=2)
    lines = _steps(reporter, clock, [5, 6, 7, 10])
    # About 8 / 2 = 4 recordings are this process's; no final line is forced (it cannot know its share).
    assert lines[0] == f"progress (worker pid {os.getpid()}, its share of 8 recordings over 2 processes): " \
                       f"1/~4 (25%), 0.2 rec/s, ETA ~15 s"
    assert lines[1:3] == [None, None]
    assert lines[3].endswith(": 4/~4 (100%), 0.4 rec/s, ETA ~0 s")
    unknown = progress.ProgressReporter(total=8, interval_s=5, clock=clock, processes=None)
    clock.now += 5
    assert unknown.step().endswith("its share of 8 recordings): 1 done, 0.2 rec/s")


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (19.4, "19 s"), (245, "4 min 05 s"), (7380, "2 h 03 min")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


def test_progress_seconds_flag():
    cfg, _ = parse_shards_args(["--data_dir", "in", "--output_dir", "out"])
    assert cfg.progress_seconds == 30.0
    cfg, _ = parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--progress_seconds", "0"])
    assert cfg.progress_seconds == 0.0
    with pytest.raises(UserError, match="--progress_seconds"):
        parse_shards_args(["--data_dir", "in", "--output_dir", "out", "--progress_seconds", "-1"])


# Every demo recording is a task: each train recording has tp rows.
TASKS = TINY_NUM_TRAIN + TINY_NUM_TEST


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("INFO core.progress: ")]


def test_job_log_shows_progress_up_to_all_recordings(tiny_dataset, tmp_path):
    """A real `python -m pipeline.shards` run (in-process DirectRunner): its stderr holds the lines.

    The multi-process DirectRunner's lines are checked in
    test_pipeline_end_to_end.py::test_rerun_refuses_then_overwrite_replaces (which runs one anyway).
    """
    proc = subprocess.run([sys.executable, "-m", "pipeline.shards", "--data_dir", tiny_dataset, "--output_dir",
                           str(tmp_path / "o"), "--num_folds", "3", "--slice_seconds", "4", "--progress_seconds",
                           "0.001"], capture_output=True, text=True,
                          cwd=common.REPO)
    assert proc.returncode == 0, proc.stderr
    lines = progress_lines(proc.stderr)
    counts = [tuple(map(int, m.groups())) for m in (re.search(r"progress: (\d+)/(\d+) recordings \(", l)
                                                    for l in lines) if m]
    assert counts and all(total == TASKS for _, total in counts)
    done = [d for d, _ in counts]
    assert done == sorted(done) and done[-1] == TASKS  # the worker's last line: N/N
    assert lines[-1].startswith(f"INFO core.progress: progress: finished, {TASKS}/{TASKS} recordings in ")


def test_worker_process_lines_go_to_its_stderr():
    """A multi-process DirectRunner worker's lines: on the stderr it shares with the driver, in its format."""
    code = ("from core import progress\n"
            "r = progress.shared('job', 2, 1e-9, 1, to_stderr=True)\n"
            "assert progress.shared('job', 2, 1e-9, 1, to_stderr=True) is r\n"
            "r.step(); r.step()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=common.REPO)
    assert proc.returncode == 0, proc.stderr
    lines = progress_lines(proc.stderr)
    assert lines and lines[-1].startswith("INFO core.progress: progress: 2/2 recordings (100%), ")


@pytest.mark.parametrize("args, processes", [([], 1), (["--direct_running_mode", "multi_threading",
                                                        "--direct_num_workers", "2"], 1),
                                             (["--direct_running_mode", "multi_processing",
                                               "--direct_num_workers", "3"], 3),
                                             (["--runner", "DataflowRunner"], None)])
def test_worker_processes_from_the_beam_options(args, processes):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline import shards

    assert shards.worker_processes(PipelineOptions(args)) == processes


@pytest.mark.parametrize("recordings", [0, 99, 100, 5000])
def test_default_worker_processes_one_per_core_for_a_large_job(monkeypatch, recordings):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline import shards

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    options = PipelineOptions([])
    shards.default_local_workers(options, [], recordings)
    # 4 cores, at least 50 recordings per process, in-process below 2 processes.
    expected = {0: 1, 99: 1, 100: 2, 5000: 4}[recordings]
    assert shards.worker_processes(options) == expected


@pytest.mark.parametrize("args", [["--direct_num_workers", "1"], ["--direct_running_mode=in_memory"],
                                  ["--runner", "DataflowRunner"]])
def test_default_worker_processes_leave_a_users_choice_alone(args):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline import shards

    options = PipelineOptions(args)
    before = options.get_all_options()
    shards.default_local_workers(options, args, 5000)
    assert options.get_all_options() == before
