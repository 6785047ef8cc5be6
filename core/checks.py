"""Up-front checks of command-line flags, shared by every entry point (pipeline.shards, trainer.*).

A user mistake must end in one `error:` line (a UserError, printed by errors.run_main) before any
work starts, not in a traceback after it. These helpers check what argparse cannot: numbers that are
NaN, infinite or out of range, and paths of the wrong kind (a file where a directory goes, or the
reverse) or that cannot be written.

    parser = checks.ArgumentParser(prog="python -m trainer.inference.predict")   # argparse errors -> UserError
    checks.number("--stride_seconds", args.stride_seconds, low=0, low_open=True)
    checks.output_dir("--run_dir", args.run_dir)        # a dir we may create and write into
    checks.output_file("--output", args.output)         # a file we may create or replace
    checks.input_file("train_tp.csv", path)             # an existing regular file

Paths with a scheme (gs://...) are left to the job: their kind and permissions cannot be known
without a request, and the first write reports them.
"""
from __future__ import annotations

import argparse
import math
import os

from core import fs
from core.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UserError (one `error:` line, exit 2 via run_main) instead of printing usage."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def number(flag: str, value: float | int | None, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> None:
    """UserError unless `value` is finite and within [low, high] ((low, high] with low_open); None passes."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{flag} must be {'>' if low_open else '>='} {low:g}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{flag} must be <= {high:g}, got {value}")


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _writable_dir(flag: str, path: str, target: str) -> None:
    """`path` (an existing ancestor of `target`, or target itself) must be a writable directory."""
    if not os.path.isdir(path):
        raise UserError(f"{flag} {target}: {path} is a file, not a directory")
    # os.access also reports read-only mounts and immutable directories, even for root.
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {target}: {path} is not writable")


def output_dir(flag: str, path: str) -> None:
    """`path` is a directory, or can be created as one, and can be written into."""
    if fs.is_remote(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, not a directory")
    _writable_dir(flag, _nearest_existing(path), path)


def output_file(flag: str, path: str) -> None:
    """`path` is not a directory and its (possibly future) parent directory can be written into."""
    if fs.is_remote(path):
        return
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory; give a file path")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} exists and is not writable")
    _writable_dir(flag, _nearest_existing(os.path.dirname(os.path.abspath(path))), path)


def input_file(what: str, path: str) -> None:
    """`path` exists and is a regular file (not a directory)."""
    if fs.is_remote(path):
        return
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory, not a file")
    if not os.path.exists(path):
        raise UserError(f"{what} {path} not found")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path} is not readable")
