"""A periodic progress line for jobs that run over many recordings: done/total, rate, ETA.

One line at most every `every_seconds` (and one at the end), printed to stdout and flushed, so the
line lands in a job's log as it happens (a progress bar's carriage returns would not):

    predicting with fold0: 12/64 recordings, 1.9/s, 27 s elapsed, ETA 27 s

    from trainer import progress
    for rec in progress.over(recordings.iter_test_recordings(shards_dir, manifest), "predicting", total=64):
        ...                                              # the line counts the items handed out
    line = progress.Progress("reading slices", total=None, unit="slices")
    line.update(done); line.update(done, final=True)
"""
from __future__ import annotations

import sys
import time
from typing import IO, Callable, Iterable, Iterator, TypeVar

from pipeline.progress import duration  # one formatting of durations for the job's and the trainer's lines

T = TypeVar("T")
DEFAULT_EVERY_SECONDS = 10.0


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
