"""The one filesystem layer for every user path, in the Beam job and the trainer alike: local and gs://.

Local paths go to the operating system; a path with a scheme (`gs://bucket/x`, the one remote test is
`is_remote`) goes to Beam's FileSystems, which every install of this project has (the Beam job needs it
on its workers, so TensorFlow is not imported here). Errors from Beam or google-cloud-storage come out as
`FilesystemError` (an OSError naming the path), a missing remote file as FileNotFoundError, like a local
one. `pathlib.Path` must not touch such a path: `Path("gs://b/x")` is `gs:/b/x`.

    from core import fs
    p = fs.join("gs://bucket/runs", "fold0", "summary.json")
    if fs.exists(p):
        summary = fs.read_json(p)
    fs.write_text(fs.join(out_dir, "report.md"), text)       # makes the parent dirs
    frame = fs.read_csv(path)                                  # pandas through this layer
    fs.create_exclusive(fs.join(out, ".lock"), "holder")      # False when it already exists (atomic)

On GCS a directory is a name prefix: `makedirs` writes nothing, `isdir` is true once an object lies
under it, and `remove` of a directory deletes every object under the prefix.
"""
from __future__ import annotations

import contextlib
import functools
import glob as globlib
import io
import json
import logging
import os
import shutil
from typing import IO, Any, Callable, Iterator, Sequence, TypeVar

import pandas as pd

from core.errors import UserError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class FilesystemError(UserError, OSError):
    """A remote file system (or its client library) refused an operation; the message names the path (an
    OSError for callers that handle file errors, a UserError for the entry points' one `error:` line)."""


def is_remote(path: str) -> bool:
    """True for a URL (`gs://...`, any scheme Beam has a file system for), False for a local path."""
    return "://" in str(path)


def _beam():
    from apache_beam.io.filesystems import (
        FileSystems,  # the job's dependency; imported once used
    )

    return FileSystems


def _wrapped(fn: F) -> F:
    """Third-party errors of a remote operation -> FilesystemError / FileNotFoundError naming the path."""

    @functools.wraps(fn)
    def call(path: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(path, *args, **kwargs)
        except Exception as e:  # BeamIOError, google.api_core errors, ...: one kind of error for callers
            if not is_remote(path) or isinstance(e, (FileNotFoundError, FileExistsError, FilesystemError)):
                raise
            text = str(e)
            if "Unable to get filesystem" in text:  # Beam has no file system for the scheme
                raise FilesystemError(f"{path}: no file system for this scheme here (gs:// needs the gcp extra: "
                                      f"pip install -e '.[gcp]')") from e
            if "404" in text or "not found" in text.lower() or "No such" in text:
                raise FileNotFoundError(f"{path}: not found") from e
            raise FilesystemError(f"{path}: {type(e).__name__}: {text.splitlines()[0] if text else ''}") from e

    return call  # type: ignore[return-value]


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a local path or a URL (os.path.join keeps the `gs://` prefix intact)."""
    return os.path.join(str(base), *[str(p) for p in parts])


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def dirname(path: str) -> str:
    """The parent of `path` ("" for a bare name, "/" for a file in the root); `gs://b/x` -> `gs://b`."""
    path = str(path).rstrip("/")
    if "/" not in path:
        return ""
    return path.rsplit("/", 1)[0] or "/"


def with_suffix(path: str, suffix: str) -> str:
    """`dir/name.csv` -> `dir/name<suffix>` (the last extension replaced; kept as given for a URL)."""
    path = str(path)
    stem, dot, _ = basename(path).rpartition(".")
    name = stem if dot and stem else basename(path)
    return join(dirname(path), name + suffix) if dirname(path) else name + suffix


def real(path: str) -> str:
    """The canonical form used to compare two paths: symlinks resolved locally, the URL as given remotely."""
    return str(path).rstrip("/") if is_remote(path) else os.path.realpath(path)


def _prefix(path: str) -> str:
    return str(path).rstrip("/") + "/"


def _metadata(pattern: str, limit: int | None = None) -> list:
    """Beam's FileMetadata (path, size_in_bytes, last_updated_in_seconds) of the matches; [] when none."""
    result = _beam().match([pattern], limits=[limit] if limit else None)[0]
    return list(result.metadata_list)


@_wrapped
def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    return bool(_metadata(_prefix(path) + "**", limit=1))


@_wrapped
def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    if "/" not in str(path).split("://", 1)[1].strip("/"):  # a bucket: no object name to look up
        return isdir(path)
    return _beam().exists(str(path)) or isdir(path)


def isfile(path: str) -> bool:
    return exists(path) and not isdir(path)


@_wrapped
def makedirs(path: str) -> None:
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


@_wrapped
def listdir(path: str) -> list[str]:
    """Entry names (files and sub-dirs, no trailing `/`), sorted; FileNotFoundError when absent."""
    if not is_remote(path):
        return sorted(os.listdir(path))
    prefix = _prefix(path)
    names = {m.path[len(prefix):].split("/", 1)[0] for m in _metadata(prefix + "**") if m.path.startswith(prefix)}
    names.discard("")  # the directory's own marker object, if a tool wrote one
    if not names and not _beam().exists(str(path)):
        raise FileNotFoundError(f"{path}: no such directory")
    return sorted(names)


def subdirs(path: str) -> list[str]:
    """Full paths of the direct sub-directories of `path`, sorted by name."""
    return [join(path, n) for n in listdir(path) if isdir(join(path, n))]


@_wrapped
def glob(pattern: str) -> list[str]:
    """Sorted paths matching a glob (`*` stays inside one directory, `**` crosses them remotely)."""
    if not is_remote(pattern):
        return sorted(globlib.glob(str(pattern)))
    return sorted(m.path for m in _metadata(str(pattern)))


def _one(path: str):
    found = [m for m in _metadata(str(path)) if m.path == str(path)]
    if not found:
        raise FileNotFoundError(f"{path}: not found")
    return found[0]


@_wrapped
def size(path: str) -> int:
    return os.path.getsize(path) if not is_remote(path) else int(_one(path).size_in_bytes)


@_wrapped
def mtime_ns(path: str) -> int:
    """Last modification time in nanoseconds (gs://: the object's update time)."""
    if not is_remote(path):
        return os.stat(path).st_mtime_ns
    return int(_one(path).last_updated_in_seconds * 1e9)


@_wrapped
def rename(src: str, dst: str, overwrite: bool = True) -> None:
    """Moves `src` to `dst` (atomic on a local filesystem; a copy then delete on gs://)."""
    if not overwrite and exists(dst):
        raise FileExistsError(f"{dst}: exists")
    if not is_remote(src):
        os.replace(src, dst)
    else:
        _beam().rename([str(src)], [str(dst)])


@_wrapped
def remove(path: str) -> None:
    """Removes a file or a whole directory tree; nothing if absent."""
    if not is_remote(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    doomed = [m.path for m in _metadata(_prefix(path) + "**")]
    if _beam().exists(str(path)):
        doomed.append(str(path))
    if doomed:
        _beam().delete(doomed)


def remove_all(paths: Sequence[str]) -> None:
    for p in paths:
        remove(p)


@_wrapped
def copy(src: str, dst: str, overwrite: bool = True) -> None:
    if not overwrite and exists(dst):
        raise FileExistsError(f"{dst}: exists")
    if not is_remote(src) and not is_remote(dst):
        shutil.copyfile(src, dst)
    else:
        write_bytes(dst, read_bytes(src))


@_wrapped
def open_file(path: str, mode: str = "r") -> IO[Any]:
    """A file object (text modes "r"/"w", binary "rb"/"wb"; "a" locally); writing makes the parent dirs."""
    path = str(path)
    if not is_remote(path):
        if mode.startswith(("w", "a")) and dirname(path):
            os.makedirs(dirname(path), exist_ok=True)
        return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    from apache_beam.io.filesystem import (
        CompressionTypes,  # no guessing from the file name's extension
    )

    if mode.startswith("r"):
        raw = _beam().open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        if "b" in mode:
            return raw
        with raw:  # remote text is read whole (the files this layer reads as text are small)
            return io.StringIO(raw.read().decode("utf-8"))
    if mode.startswith("w"):
        raw = _beam().create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return raw if "b" in mode else _TextUpload(raw)
    raise ValueError(f"mode {mode!r} is not supported on {path} (remote files are read or written whole)")


class _TextUpload(io.StringIO):
    """A text file for a remote path: collected in memory, uploaded (UTF-8) when closed."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def close(self) -> None:
        if not self.closed:
            with self._raw:
                self._raw.write(self.getvalue().encode("utf-8"))
        super().close()


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    with open_file(path, "r") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with open_file(path, "wb") as f:
        f.write(data)


def write_atomically(path: str, data: bytes, temp: str) -> None:
    """`data` at `path` whole, or nothing there (and no `temp` left) when the write fails: `temp` (in the
    same dir, so the rename stays on one filesystem) is written, then renamed over `path`."""
    try:
        write_bytes(temp, data)
        rename(temp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            remove(temp)
        raise


def write_text(path: str, text: str) -> None:
    with open_file(path, "w") as f:
        f.write(text)


def read_json(path: str) -> Any:
    """The parsed JSON of `path`; json.JSONDecodeError / UnicodeDecodeError propagate for the caller's message."""
    return json.loads(read_text(path))


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_csv(path: str, **kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv through this layer (pandas alone would need gcsfs for gs://)."""
    return pd.read_csv(io.BytesIO(read_bytes(path)), **kwargs)


def write_csv(frame: pd.DataFrame, path: str, **kwargs: Any) -> None:
    kwargs.setdefault("index", False)
    write_text(path, frame.to_csv(**kwargs))


def missing(paths: Sequence[str]) -> list[str]:
    """The paths of `paths` that do not exist, in order."""
    return [p for p in paths if not exists(p)]


def create_exclusive(path: str, text: str) -> bool:
    """Creates `path` holding `text` unless it exists; False when it did. Atomic locally
    (O_CREAT | O_EXCL) and on gs:// (google-cloud-storage's `if_generation_match=0`, which GCS refuses
    for an existing object; Beam's FileSystems has no conditional create); check-then-create, with a
    warning, on other schemes."""
    if not is_remote(path):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    if str(path).startswith("gs://"):
        with _gcs_errors(path):
            from google.api_core import exceptions

            try:
                _gcs_blob(path).upload_from_string(text, if_generation_match=0)
            except exceptions.PreconditionFailed:
                return False
            return True
    if exists(path):
        return False
    log.warning("%s: no atomic create on this file system; best effort", path)
    write_text(path, text)
    return True


def read_text_or_none(path: str) -> str | None:
    try:
        return read_text(path)
    except FileNotFoundError:
        return None


def _gcs_blob(path: str):
    from google.cloud import storage  # apache-beam[gcp]

    bucket, name = str(path)[len("gs://"):].split("/", 1)
    return storage.Client().bucket(bucket).blob(name)


@contextlib.contextmanager
def _gcs_errors(path: str) -> Iterator[None]:
    try:
        yield
    except ImportError as e:
        raise FilesystemError(f"{path}: gs:// needs google-cloud-storage (pip install '.[gcp]')") from e
    except OSError:
        raise
    except Exception as e:
        if type(e).__name__ == "PreconditionFailed":
            raise
        raise FilesystemError(f"{path}: {type(e).__name__}: {e}") from e
