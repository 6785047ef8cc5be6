"""Progress lines, one format for the Beam job and the trainer: done / total, rate and ETA, at a steady interval.

The Beam job logs them per worker process (`ProgressReporter`, `shared`):

    reporter = ProgressReporter(total=48, interval_s=30)
    for task in tasks:
        ...
        reporter.step()   # logs at most one line per interval_s, and always the one that reaches total
    # INFO core.progress: progress: 12/48 recordings (25%), 1.9 rec/s, ETA 19 s

Plain Python (the clock is injectable for tests). pipeline.transforms.ProcessRecording keeps one
reporter per worker process (shared()): on the in-process DirectRunner, which runs every recording
in the driver's process, its lines count the whole job; with --direct_running_mode
multi_processing (or on Dataflow) each worker process counts and reports only its own share, and
says so in the line.

The trainer's loops over recordings print them (`Progress`, `over`): 
one line at most every `every_seconds` (and one at the end), printed to stdout and flushed, so the
line lands in a job's log as it happens (a progress bar's carriage returns would not):

    predicting with fold0: 12/64 recordings, 1.9/s, 27 s elapsed, ETA 27 s

    from core import progress
    for rec in progress.over(recordings.iter_test_recordings(shards_dir, manifest), "predicting", total=64):
        ...                                              # the line counts the items handed out
    line = progress.Progress("reading slices", total=None, unit="slices")
    line.update(done); line.update(done, final=True)
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import IO, Callable, Iterable, Iterator, TypeVar

LOGGER_NAME = "core.progress"
_log = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")
DEFAULT_EVERY_SECONDS = 10.0
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_job_logging() -> None:
    """A Beam job's command line (pipeline.shards, detect.run): warnings from everyone, and the progress lines
    too (INFO), all to stderr in one format."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    _log.setLevel(logging.INFO)


def duration(seconds: float) -> str:
    """`19 s`, `4 min 05 s`, `2 h 03 min`: what an ETA needs, no more."""
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressReporter:
    """Counts finished recordings and logs a progress line every `interval_s` seconds (0: never).

    processes: how many worker processes share the recordings. 1: this process sees all of them, the
    line says done/total. More: it sees about total/processes of them and says so (its ETA is for
    that estimated share). None: an unknown share (no ETA).
    """

    def __init__(self, total: int, interval_s: float, clock: Callable[[], float] = time.monotonic,
                 processes: int | None = 1, logger: logging.Logger = _log):
        self.total, self.interval_s, self.processes = total, interval_s, processes
        self._clock, self._logger = clock, logger
        self._start = self._last = clock()
        self._done = 0
        self._lock = threading.Lock()  # DoFn instances on several threads of one process share a reporter

    @property
    def done(self) -> int:
        return self._done

    def step(self, n: int = 1) -> str | None:
        """Counts `n` finished recordings; returns the line it logged, if it is time for one."""
        with self._lock:
            self._done += n
            if self.interval_s <= 0:
                return None
            now = self._clock()
            final = self.processes == 1 and self._done >= self.total
            if not final and now - self._last < self.interval_s:
                return None
            self._last = now
            line = self.line(now)
        self._logger.info("%s", line)
        return line

    def line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self._done / elapsed if elapsed > 0 else float("nan")
        rate_text = f"{rate:.1f} rec/s" if math.isfinite(rate) else "rate unknown"
        if self.processes == 1:
            share, head, tilde = self.total, "progress", ""
            count = f"{self._done}/{self.total} recordings"
        else:
            over = f" over {self.processes} processes" if self.processes else ""
            head = f"progress (worker pid {os.getpid()}, its share of {self.total} recordings{over})"
            share = math.ceil(self.total / self.processes) if self.processes else None
            tilde = "~"
            count = f"{self._done}/~{share}" if share else f"{self._done} done"
        if not share:
            return f"{head}: {count}, {rate_text}"
        left = max(share - self._done, 0)
        if left == 0:
            eta = duration(0)
        else:
            eta = duration(left / rate) if math.isfinite(rate) and rate > 0 else "unknown"
        return f"{head}: {count} ({100 * min(self._done, share) // share}%), {rate_text}, ETA {tilde}{eta}"


def finished_line(done: int, total: int, seconds: float) -> str:
    """The driver's line once the job ran: every worker's count together (from the job's counter)."""
    rate = f", {done / seconds:.1f} rec/s" if seconds > 0 else ""
    return f"progress: finished, {done}/{total} recordings in {duration(seconds)}{rate}"


_shared: dict[str, ProgressReporter] = {}
_shared_lock = threading.Lock()


def _to_stderr() -> None:
    """A multi-process DirectRunner worker's own stderr handler for the progress lines.

    Such a worker forwards its log records to the driver, which logs them at their level under a
    Beam logger that `python -m pipeline.shards` keeps at WARNING; the worker's stderr is the
    driver's terminal, so the lines go there directly, in the driver's format.
    """
    if not _log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False


def shared(key: str, total: int, interval_s: float, processes: int | None,
           to_stderr: bool = False) -> ProgressReporter:
    """The reporter of job `key` in this process, created by the first caller (every DoFn instance
    of one process counts into the same one, so a single-process run reaches total/total).

    to_stderr: this is a multi-process DirectRunner worker, whose lines go to its stderr
    (_to_stderr). Otherwise they go to the logging setup of the process: the driver's
    (in-process DirectRunner) or the runner's (Dataflow).
    """
    with _shared_lock:
        if key not in _shared:
            if to_stderr:
                _to_stderr()
            _shared[key] = ProgressReporter(total, interval_s, processes=processes)
        return _shared[key]

def progress_line(what: str, done: int, total: int | None, elapsed: float, unit: str = "recordings") -> str:
    """The text of one line; the rate and ETA only once something is done (and the ETA with a total)."""
    count = f"{done}/{total}" if total is not None else f"{done}"
    parts = [f"{what}: {count} {unit}".rstrip()]
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        parts.append(f"{rate:.3g}/s")
    parts.append(f"{duration(elapsed)} elapsed")
    if total is not None and done > 0 and elapsed > 0 and done < total:
        parts.append(f"ETA {duration((total - done) * elapsed / done)}")
    return ", ".join(parts)


class Progress:
    """Prints progress_line(...) at most every `every_seconds` seconds, and always on `final`."""

    def __init__(self, what: str, total: int | None, every_seconds: float = DEFAULT_EVERY_SECONDS,
                 unit: str = "recordings", stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.every, self.unit = what, total, every_seconds, unit
        self.stream, self.clock = stream, clock
        self.start = self.last = clock()
        self.printed: int | None = None  # the count of the last line printed

    def update(self, done: int, final: bool = False) -> None:
        now = self.clock()
        if (final and done != self.printed) or now - self.last >= self.every:
            self.last, self.printed = now, done
            print(progress_line(self.what, done, self.total, now - self.start, self.unit),
                  file=self.stream or sys.stdout, flush=True)


def over(items: Iterable[T], what: str, total: int | None, every_seconds: float = DEFAULT_EVERY_SECONDS,
         unit: str = "recordings", stream: IO[str] | None = None) -> Iterator[T]:
    """Yields `items` unchanged, updating a Progress after each; the final line once they are exhausted."""
    line = Progress(what, total, every_seconds, unit, stream)
    done = 0
    for item in items:
        yield item
        done += 1
        line.update(done)
    line.update(done, final=True)
