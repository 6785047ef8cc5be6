"""A full disk during the shards job: one `error:` line naming the device, no temp files, no half manifest.

    with disk_space.full_disk_is_a_user_error(out):     # around the job and the manifest write
        ...
        disk_space.write_atomically(path, data)         # temp file + rename: whole or absent

manifest.json marks a finished job (readers and the Makefile's target take its presence for that),
so it is written to a temp name and renamed: a disk that fills up while it is written leaves no
manifest, not a 0-byte one. When the job or that write fails for lack of space (ENOSPC anywhere in
the exception's chain: Beam wraps worker errors), the context removes the sinks' `beam-temp-*`
dirs and the manifest's temp file and raises one UserError naming the file system.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from typing import Iterator

from core import fs
from core.errors import UserError

TEMP_SUFFIX = ".writing"
_BEAM_TEMP = "beam-temp-"
_NO_SPACE = "No space left on device"


def is_disk_full(error: BaseException) -> bool:
    """True when ENOSPC is the error or anything in its __cause__/__context__ chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or _NO_SPACE in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def write_atomically(path: str, data: bytes) -> None:
    """`data` at `path` whole, or nothing there (and no temp file) when the write fails."""
    fs.write_atomically(path, data, path + TEMP_SUFFIX)


def remove_temp_files(out: str) -> None:
    """The sinks' beam-temp-* dirs anywhere under OUT, and a manifest temp file (best effort)."""
    if fs.is_remote(out):
        with contextlib.suppress(Exception):
            fs.remove_all([p for pattern in ("**" + _BEAM_TEMP + "**", "*" + TEMP_SUFFIX)
                           for p in fs.glob(fs.join(out, pattern))])
        return
    for root, dirs, names in os.walk(out):
        for d in [d for d in dirs if d.startswith(_BEAM_TEMP)]:
            shutil.rmtree(os.path.join(root, d), ignore_errors=True)
            dirs.remove(d)
        for n in names:
            if n.startswith(_BEAM_TEMP) or n.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(root, n))


def describe_device(out: str) -> str:
    """"the file system mounted at /mnt/x (/dev/sdb1)" for a local OUT; the bucket's URL otherwise."""
    if fs.is_remote(out):
        return out
    mount = os.path.realpath(out)
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    device = ""
    with contextlib.suppress(OSError):
        with open("/proc/mounts") as f:
            device = next((line.split()[0] for line in f if line.split()[1:2] == [mount]), "")
    return f"the file system mounted at {mount}" + (f" ({device})" if device else "")


@contextlib.contextmanager
def full_disk_is_a_user_error(out: str) -> Iterator[None]:
    try:
        yield
    except Exception as e:  # pylint: disable=broad-except  # only a full disk is handled; the rest re-raised
        if isinstance(e, UserError) or not is_disk_full(e):
            raise
        remove_temp_files(out)
        raise UserError(f"no space left on {describe_device(out)}, which holds --output_dir {out}; the job "
                        f"stopped without a manifest and its temp files are removed: free space and re-run "
                        f"with --overwrite") from None
