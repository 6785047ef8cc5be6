"""One job per output dir: an exclusive marker file created atomically in the dir, removed at the end.

Two runs into the same OUT (even with --overwrite) would otherwise both "succeed", the survivor
holding one run's config.json next to the other's shards. The first run creates OUT/.shards.lock
(holder: host, pid, start time, command); a second one finds it and stops with one error line
naming the holder. `--overwrite` never breaks a live lock. A lock left by a killed run is stale when
its holder ran on this host and its pid is gone; `--overwrite` then replaces it (other hosts cannot
be checked: the message says which file to delete).

    with outlock.held(out_dir, overwrite=cfg.overwrite):   # UserError when another run holds OUT
        ... write OUT ...

Atomic creation is core.fs.create_exclusive's (O_EXCL locally, a generation-0 precondition on gs://).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import uuid
from typing import Iterator

from core import fs
from core.errors import UserError

LOCK_NAME = ".shards.lock"
# Held while a stale lock is replaced, so that two runs cannot both remove and re-create it.
BREAK_NAME = LOCK_NAME + ".break"

log = logging.getLogger(__name__)


def is_lock_path(path: str) -> bool:
    """True for the lock's own files (the output dir's emptiness check and --overwrite skip them)."""
    return path.rstrip("/").rsplit("/", 1)[-1] in (LOCK_NAME, BREAK_NAME)


def _create(path: str, text: str) -> bool:
    try:
        return fs.create_exclusive(path, text)
    except OSError as e:
        raise UserError(f"cannot create {path}: {e.strerror or e}") from e


def _holder_text() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
                       "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "command": " ".join(sys.argv)}, indent=2)


def _describe(text: str | None) -> str:
    try:
        h = json.loads(text or "")
        return f"pid {h['pid']} on host {h['host']}, started {h['started']} (command: {h['command']})"
    except (ValueError, KeyError, TypeError):
        return "an unknown holder (the lock file is empty or unreadable: being written, or damaged)"


def is_stale(text: str | None) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    try:
        h = json.loads(text or "")
        host, pid = h["host"], int(h["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return False  # cannot tell: another machine
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    return False


@contextlib.contextmanager
def _guard(guard: str) -> Iterator[None]:
    if not _create(guard, _holder_text()):
        raise UserError(f"another run is replacing the stale lock {guard[:-len('.break')]} right now; if none is, "
                        f"delete {guard}")
    try:
        yield
    finally:
        fs.remove(guard)


class Lock:
    """A held lock on one output dir; `release()` removes it (only if it is still ours)."""

    def __init__(self, out_dir: str, text: str, created_dir: bool, name: str = LOCK_NAME):
        self.path = fs.join(out_dir, name)
        self._out_dir, self._text, self._created_dir = out_dir, text, created_dir

    def release(self) -> None:
        try:
            if fs.read_text_or_none(self.path) == self._text:  # never remove a lock another run took over
                fs.remove(self.path)
        except OSError as e:  # never hide the error the job itself raised behind a failed clean-up
            log.warning("could not release the lock %s (%s); delete it by hand", self.path, e)
            return
        if self._created_dir and not fs.is_remote(self._out_dir):
            # A run that stopped before writing anything leaves no empty dir behind.
            with contextlib.suppress(OSError):
                os.rmdir(self._out_dir)


def acquire(out_dir: str, overwrite: bool, name: str = LOCK_NAME, job: str = "pipeline.shards",
            flag: str = "--output_dir") -> Lock:
    """Takes the lock `name` of `out_dir` (created if needed) or raises UserError naming its holder.

    `job` and `flag` name the command and its output flag in the messages (trainer.training.train locks
    its --run_dir with its own lock name)."""
    created = False
    if not fs.is_remote(out_dir) and not fs.isdir(out_dir):
        try:
            os.makedirs(out_dir)
        except OSError as e:
            raise UserError(f"cannot create {flag} {out_dir}: {e.strerror}") from e
        created = True
    path, guard = fs.join(out_dir, name), fs.join(out_dir, name + ".break")
    text = _holder_text()
    if _create(path, text):
        return Lock(out_dir, text, created, name)
    held_by = fs.read_text_or_none(path)
    if is_stale(held_by) and overwrite:
        with _guard(guard):
            if fs.read_text_or_none(path) == held_by:  # still the same dead holder: nobody replaced it meanwhile
                log.warning("replacing the stale lock %s of %s (--overwrite)", path, _describe(held_by))
                fs.remove(path)
        if _create(path, text):
            return Lock(out_dir, text, created, name)
        held_by = fs.read_text_or_none(path)
    if is_stale(held_by):
        raise UserError(f"{flag} {out_dir} is locked by {_describe(held_by)}, which is no longer running "
                        f"(a killed run); pass --overwrite to replace it and its output, or delete {path}")
    raise UserError(f"{flag} {out_dir} is in use by another run of {job}: {_describe(held_by)} "
                    f"holds {path}. Wait for it to finish or use another {flag} (--overwrite does not "
                    f"stop a running job); if that run is gone, delete {path}")


@contextlib.contextmanager
def held(out_dir: str, overwrite: bool, **who: str) -> Iterator[Lock]:
    """The lock of `out_dir` for the duration of the block, released even when the block raises.

    `who`: acquire's name, job and flag."""
    lock = acquire(out_dir, overwrite, **who)
    try:
        yield lock
    finally:
        lock.release()
