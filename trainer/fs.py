"""The one filesystem layer for every user path the trainer reads or writes: local and gs:// alike.

Every path a user passes (shards dir, run dir, runs root, output CSV, plot dir) goes through these
functions, which wrap tf.io.gfile (TensorFlow's filesystem: local paths, gs://, and any scheme TF has a
plugin for). `pathlib.Path` must not touch such a path: `Path("gs://b/x")` is `gs:/b/x`.

    from trainer import fs
    p = fs.join("gs://bucket/runs", "fold0", "summary.json")
    if fs.exists(p):
        summary = fs.read_json(p)
    fs.write_text(fs.join(out_dir, "report.md"), text)       # makes the parent dirs
    frame = fs.read_csv(path)                                  # pandas through gfile
"""
from __future__ import annotations

import io
import json
import os
from typing import IO, Any, Sequence

import pandas as pd
import tensorflow as tf


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


def exists(path: str) -> bool:
    return tf.io.gfile.exists(str(path))


def isdir(path: str) -> bool:
    return tf.io.gfile.isdir(str(path))


def isfile(path: str) -> bool:
    return exists(path) and not isdir(path)


def makedirs(path: str) -> None:
    tf.io.gfile.makedirs(str(path))


def listdir(path: str) -> list[str]:
    """Entry names (no trailing `/` on sub-dirs), sorted."""
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(str(path)))


def subdirs(path: str) -> list[str]:
    """Full paths of the direct sub-directories of `path`, sorted by name."""
    return [join(path, n) for n in listdir(path) if isdir(join(path, n))]


def glob(pattern: str) -> list[str]:
    return sorted(tf.io.gfile.glob(str(pattern)))


def size(path: str) -> int:
    return int(tf.io.gfile.stat(str(path)).length)


def mtime_ns(path: str) -> int:
    """Last modification time in nanoseconds (gs://: the object's update time)."""
    return int(tf.io.gfile.stat(str(path)).mtime_nsec)


def rename(src: str, dst: str, overwrite: bool = True) -> None:
    """Moves `src` to `dst` (atomic on a local filesystem; a copy then delete on gs://)."""
    tf.io.gfile.rename(str(src), str(dst), overwrite=overwrite)


def with_suffix(path: str, suffix: str) -> str:
    """`dir/name.csv` -> `dir/name<suffix>` (the last extension replaced; kept as given for a URL)."""
    path = str(path)
    stem, dot, ext = basename(path).rpartition(".")
    name = stem if dot and stem else basename(path)
    return join(dirname(path), name + suffix) if dirname(path) else name + suffix


def remove(path: str) -> None:
    """Removes a file or a whole directory tree; nothing if absent."""
    path = str(path)
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def copy(src: str, dst: str, overwrite: bool = True) -> None:
    tf.io.gfile.copy(str(src), str(dst), overwrite=overwrite)


def open_file(path: str, mode: str = "r") -> IO[Any]:
    """A file object (text modes "r"/"w", binary "rb"/"wb"); writing makes the parent dirs."""
    path = str(path)
    if mode.startswith(("w", "a")) and dirname(path):
        tf.io.gfile.makedirs(dirname(path))
    return tf.io.gfile.GFile(path, mode)


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    with open_file(path, "r") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with open_file(path, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    with open_file(path, "w") as f:
        f.write(text)


def read_json(path: str) -> Any:
    """The parsed JSON of `path`; json.JSONDecodeError / UnicodeDecodeError propagate for the caller's message."""
    return json.loads(read_text(path))


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_csv(path: str, **kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv through gfile (pandas alone would need gcsfs for gs://)."""
    return pd.read_csv(io.BytesIO(read_bytes(path)), **kwargs)


def write_csv(frame: pd.DataFrame, path: str, **kwargs: Any) -> None:
    kwargs.setdefault("index", False)
    write_text(path, frame.to_csv(**kwargs))


def missing(paths: Sequence[str]) -> list[str]:
    """The paths of `paths` that do not exist, in order."""
    return [p for p in paths if not exists(p)]
