"""`ram://` for Beam's FileSystems, backed by TensorFlow's in-memory filesystem (tf.io.gfile `ram://`).

A path that is not local and that both sides reach: core.fs (through Beam's FileSystems) and TensorFlow
(tf.data reading shards, Keras saving models) see the same files. Code that used pathlib, open() or
os.path on such a path would fail or write into the working directory, so the trainer's readers and
writers are tested on it. Importing this module registers the scheme (Beam finds FileSystem subclasses
by their scheme()); only tests import it.
"""
from __future__ import annotations

import posixpath
from typing import BinaryIO

import tensorflow as tf
from apache_beam.io.filesystem import (
    BeamIOError,
    CompressionTypes,
    FileMetadata,
    FileSystem,
)


class RamFileSystem(FileSystem):
    """Beam's FileSystem interface over tf.io.gfile for `ram://` paths (tests only)."""

    @classmethod
    def scheme(cls) -> str:
        return "ram"

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        return posixpath.split(path)

    def mkdirs(self, path: str) -> None:
        tf.io.gfile.makedirs(path)

    def has_dirs(self) -> bool:
        return True

    def _list(self, dir_or_prefix: str):
        prefix = dir_or_prefix.rstrip("/")
        if not tf.io.gfile.isdir(prefix):
            return
        for directory, _, files in tf.io.gfile.walk(prefix):
            for name in files:
                path = posixpath.join(directory, name)
                stat = tf.io.gfile.stat(path)
                yield FileMetadata(path, stat.length, stat.mtime_nsec / 1e9)

    def create(self, path: str, mime_type: str = "application/octet-stream",
               compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        tf.io.gfile.makedirs(posixpath.dirname(path))
        return tf.io.gfile.GFile(path, "wb")

    def open(self, path: str, mime_type: str = "application/octet-stream",
             compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        if not tf.io.gfile.exists(path):
            raise BeamIOError(f"{path}: not found", {path: FileNotFoundError(path)})
        return tf.io.gfile.GFile(path, "rb")

    def copy(self, source_file_names, destination_file_names) -> None:
        for src, dst in zip(source_file_names, destination_file_names):
            tf.io.gfile.copy(src, dst, overwrite=True)

    def rename(self, source_file_names, destination_file_names) -> None:
        for src, dst in zip(source_file_names, destination_file_names):
            tf.io.gfile.rename(src, dst, overwrite=True)

    def exists(self, path: str) -> bool:
        return tf.io.gfile.exists(path)

    def size(self, path: str) -> int:
        return tf.io.gfile.stat(path).length

    def last_updated(self, path: str) -> float:
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path: str) -> str:
        return str(self.size(path))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths) -> None:
        for path in paths:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            elif tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
