"""What a worker checks before it reads a recording's file: bounded time and memory, nothing outside DATA.

    data = transforms.read_bytes(file_guard.checked(task.path, cfg))   # audio.AudioError with a dead-letter reason

Only regular files are read (a FIFO would block the worker forever, /dev/zero would fill its memory):
`not_a_file`. A local file reached through a symlink must lead inside the data dir, real paths
compared: `outside_data_dir` (the README promises that no id reaches outside it). A file larger than
any recording of --max_recording_seconds could be is refused from its size, before it is read:
`too_large`.
"""
from __future__ import annotations

import os
import stat

from core import fs
from pipeline import audio, labels
from pipeline.config import ShardsConfig

NOT_A_FILE = "not_a_file"
OUTSIDE_DATA_DIR = "outside_data_dir"
TOO_LARGE = "too_large"
# Bytes per second of the largest recording the job expects stored uncompressed (96 kHz, 2 channels,
# 32-bit), plus room for metadata blocks (tags, pictures): a loose bound, so that a long but
# otherwise ordinary file is still read and refused as `too_long` by its decoded length.
MAX_BYTES_PER_SECOND = 96000 * 2 * 4
METADATA_BYTES = 16 << 20


def byte_limit(max_seconds: float) -> int:
    return int(max_seconds * MAX_BYTES_PER_SECOND) + METADATA_BYTES


def _check_local(path: str, data_dir: str, limit: int) -> None:
    try:
        info = os.stat(path)  # follows symlinks: the kind and size of what would be read
    except FileNotFoundError as e:
        raise audio.AudioError(labels.MISSING_FLAC, f"cannot read {path}: {e}") from e
    if not stat.S_ISREG(info.st_mode):
        raise audio.AudioError(NOT_A_FILE, f"{path} is not a regular file (mode {stat.filemode(info.st_mode)})")
    real, root = os.path.realpath(path), os.path.realpath(data_dir)
    if real != os.path.abspath(path) and not real.startswith(root.rstrip(os.sep) + os.sep):  # a symlink out
        raise audio.AudioError(OUTSIDE_DATA_DIR, f"{path} leads to {real}, outside the data dir {root}")
    if info.st_size > limit:
        raise audio.AudioError(TOO_LARGE, f"{path} has {info.st_size} bytes, more than a recording of "
                                          f"--max_recording_seconds can take ({limit})")


def _remote_size(path: str) -> int | None:
    try:
        return fs.size(path)
    except OSError:  # the read reports what is wrong
        return None


def checked(path: str, cfg: ShardsConfig) -> str:
    """`path` once the checks above pass (the caller then reads it); audio.AudioError with the reason otherwise."""
    return checked_path(path, cfg.data_dir, cfg.max_recording_seconds)


def checked_path(path: str, data_dir: str, max_recording_seconds: float) -> str:
    """`checked` for any job: `path` must lie in `data_dir` and fit `max_recording_seconds`."""
    limit = byte_limit(max_recording_seconds)
    if not fs.is_remote(path):
        _check_local(path, data_dir, limit)
        return path
    size = _remote_size(path)
    if size is not None and size > limit:
        raise audio.AudioError(TOO_LARGE, f"{path} has {size} bytes, more than a recording of "
                                          f"--max_recording_seconds can take ({limit})")
    return path
