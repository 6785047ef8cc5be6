"""One job per output dir: an exclusive marker file created atomically in the dir, removed at the end.

Two runs into the same OUT (even with --overwrite) would otherwise both "succeed", the survivor
holding one run's config.json next to the other's shards. The first run creates OUT/.shards.lock
(holder: host, pid, start time, command); a second one finds it and stops with one error line
naming the holder. `--overwrite` never breaks a live lock. A lock left by a killed run is stale when
its holder ran on this host and its pid is gone; `--overwrite` then replaces it (other hosts cannot
be checked: the message says which file to delete).

    with outlock.held(out_dir, overwrite=cfg.overwrite):   # UserError when another run holds OUT
        ... write OUT ...

Atomic creation: locally `open(O_CREAT | O_EXCL)`. On gs:// Beam's FileSystems has no public
conditional create, so the lock is written with google-cloud-storage (installed with
apache-beam[gcp]) under the precondition `if_generation_match=0`, which GCS rejects when the object
exists. Other schemes get a best-effort check-then-create (not atomic), with a warning.
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

from apache_beam.io.filesystems import FileSystems

from pipeline.errors import UserError

LOCK_NAME = ".shards.lock"
# Held while a stale lock is replaced, so that two runs cannot both remove and re-create it.
BREAK_NAME = LOCK_NAME + ".break"

log = logging.getLogger(__name__)


def is_lock_path(path: str) -> bool:
    """True for the lock's own files (the output dir's emptiness check and --overwrite skip them)."""
    return path.rstrip("/").rsplit("/", 1)[-1] in (LOCK_NAME, BREAK_NAME)


class _Local:
    """Lock files on a local disk."""

    @staticmethod
    def create(path: str, text: str) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise UserError(f"cannot create {path}: {e.strerror}") from e
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True

    @staticmethod
    def read(path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def remove(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class _Gcs:
    """Lock objects on GCS: creation conditional on the object not existing (generation 0)."""

    @staticmethod
    def _blob(path: str):
        from google.cloud import storage  # apache-beam[gcp]

        bucket, name = path[len("gs://"):].split("/", 1)
        return storage.Client().bucket(bucket).blob(name)

    @classmethod
    def create(cls, path: str, text: str) -> bool:
        from google.api_core import exceptions

        try:
            cls._blob(path).upload_from_string(text, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True

    @classmethod
    def read(cls, path: str) -> str | None:
        from google.api_core import exceptions

        try:
            return cls._blob(path).download_as_text()
        except exceptions.NotFound:
            return None

    @classmethod
    def remove(cls, path: str) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound):
            cls._blob(path).delete()


class _BestEffort:
    """Any other Beam file system: check, then create (two runs starting at once may both pass)."""

    @staticmethod
    def create(path: str, text: str) -> bool:
        if FileSystems.exists(path):
            return False
        log.warning("%s: no atomic create on this file system; the lock is best effort", path)
        with FileSystems.create(path) as f:
            f.write(text.encode())
        return True

    @staticmethod
    def read(path: str) -> str | None:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path) as f:
            return f.read().decode(errors="replace")

    @staticmethod
    def remove(path: str) -> None:
        if FileSystems.exists(path):
            FileSystems.delete([path])


def _backend(out_dir: str):
    if "://" not in out_dir:
        return _Local
    return _Gcs if out_dir.startswith("gs://") else _BestEffort


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
def _guard(backend, guard: str) -> Iterator[None]:
    if not backend.create(guard, _holder_text()):
        raise UserError(f"another run is replacing the stale lock {guard[:-len('.break')]} right now; if none is, "
                        f"delete {guard}")
    try:
        yield
    finally:
        backend.remove(guard)


class Lock:
    """A held lock on one output dir; `release()` removes it (only if it is still ours)."""

    def __init__(self, out_dir: str, backend, text: str, created_dir: bool, name: str = LOCK_NAME):
        self.path = FileSystems.join(out_dir, name)
        self._out_dir, self._backend, self._text, self._created_dir = out_dir, backend, text, created_dir

    def release(self) -> None:
        if self._backend.read(self.path) == self._text:  # never remove a lock another run took over
            self._backend.remove(self.path)
        if self._created_dir and self._backend is _Local:
            # A run that stopped before writing anything leaves no empty dir behind.
            with contextlib.suppress(OSError):
                os.rmdir(self._out_dir)


def acquire(out_dir: str, overwrite: bool, name: str = LOCK_NAME, job: str = "pipeline.shards",
            flag: str = "--output_dir") -> Lock:
    """Takes the lock `name` of `out_dir` (created if needed) or raises UserError naming its holder.

    `job` and `flag` name the command and its output flag in the messages (trainer.train locks its
    --run_dir with its own lock name)."""
    backend = _backend(out_dir)
    created = False
    if backend is _Local and not os.path.isdir(out_dir):
        try:
            os.makedirs(out_dir)
        except OSError as e:
            raise UserError(f"cannot create {flag} {out_dir}: {e.strerror}") from e
        created = True
    path, guard = FileSystems.join(out_dir, name), FileSystems.join(out_dir, name + ".break")
    text = _holder_text()
    if backend.create(path, text):
        return Lock(out_dir, backend, text, created, name)
    held_by = backend.read(path)
    if is_stale(held_by) and overwrite:
        with _guard(backend, guard):
            if backend.read(path) == held_by:  # still the same dead holder: nobody replaced it meanwhile
                log.warning("replacing the stale lock %s of %s (--overwrite)", path, _describe(held_by))
                backend.remove(path)
        if backend.create(path, text):
            return Lock(out_dir, backend, text, created, name)
        held_by = backend.read(path)
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
