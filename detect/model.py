"""An exported SavedModel's "windows" signature as a numpy function (core.export_layout's contract).

    model = ExportedModel.load("gs://bucket/exports/demo")   # copies a remote model to a local temp dir
    scores, embeddings = model(batch)                         # float32 [B, window] -> [B, C], [B, D]
    model = shared("gs://bucket/exports/demo", meta)          # one per process, whatever the DoFn instances
    limit_threads(threads_per_process(processes=2))           # before the first TensorFlow op of the process

A remote export is copied through core.fs (Beam's GCS IO) to a local temp dir before TensorFlow loads
it, so a worker needs no TensorFlow file-system plugin for the scheme and reads each file once.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

import numpy as np

from core import export_layout, fs
from core.errors import UserError


def threads_per_process(processes: int | None, asked: int = 0) -> int:
    """TensorFlow threads for one of `processes` worker processes sharing this machine's cores; 0 = TF's default.

    Each TensorFlow process starts a pool of one thread per core: N worker processes would run N x cores
    threads on the cores, which then time-slice and spin-wait on each other. Giving each its share keeps
    every core busy with one thread. Unknown process counts (remote runners: one process per machine
    with several threads) keep TF's default.
    """
    if asked:
        return asked
    if not processes or processes < 2:
        return 0
    return max(1, (os.cpu_count() or 1) // processes)


def limit_threads(threads: int) -> bool:
    """Caps this process's TensorFlow intra- and inter-op pools at `threads` (0: leaves TF's default).

    Only possible before TensorFlow runs its first op in the process; False (and the default pools)
    when it already has, e.g. when the job runs in-process beside other TensorFlow work.
    """
    if threads <= 0:
        return False
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # "... cannot be modified after initialization"
        return False
    return True


def local_copy(remote_dir: str) -> str:
    """Every file under `remote_dir` copied into a new local temp dir (same relative paths); its path."""
    local = tempfile.mkdtemp(prefix="detect-model-")
    prefix = remote_dir.rstrip("/") + "/"
    files = fs.glob(prefix + "**")
    if not files:
        raise UserError(f"{remote_dir}: no files (is it the saved_model dir of an export?)")
    for path in files:
        target = os.path.join(local, *path[len(prefix):].split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(fs.read_bytes(path))
    return local


class ExportedModel:
    """The windows signature of EXPORT/saved_model; scores float32 [B, C], embeddings float32 [B, D]."""

    def __init__(self, fn, meta: export_layout.ExportMetadata, temp_dir: str | None = None):
        self._fn, self.meta, self._temp_dir = fn, meta, temp_dir

    @classmethod
    def load(cls, export_dir: str, meta: export_layout.ExportMetadata | None = None) -> "ExportedModel":
        import tensorflow as tf  # on workers only: the driver never loads TensorFlow

        meta = meta or export_layout.read_metadata(export_dir)
        saved = export_layout.path(export_dir, export_layout.SAVED_MODEL)
        temp = local_copy(saved) if fs.is_remote(saved) else None
        loaded = tf.saved_model.load(temp or saved)
        if export_layout.WINDOWS_SIGNATURE not in loaded.signatures:
            raise UserError(f"{saved} has no {export_layout.WINDOWS_SIGNATURE!r} signature (it has: "
                            f"{', '.join(loaded.signatures)}); re-export it with `make export`")
        model = cls(loaded.signatures[export_layout.WINDOWS_SIGNATURE], meta, temp)
        model._loaded = loaded  # keeps the signature's variables alive
        return model

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        out = self._fn(**{export_layout.INPUT: tf.constant(np.asarray(windows, np.float32))})
        return (np.asarray(out[export_layout.SCORES], np.float32),
                np.asarray(out[export_layout.EMBEDDINGS], np.float32))

    def close(self) -> None:
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


_shared: dict[str, ExportedModel] = {}
_shared_lock = threading.Lock()


def shared(export_dir: str, meta: export_layout.ExportMetadata) -> ExportedModel:
    """The process's one loaded copy of `export_dir`: a runner may make a DoFn instance per thread (Dataflow
    runs several threads per worker process), and each loading its own model would multiply the memory and
    the start-up. A TF signature may be called from several threads at once. Its temp dir goes at exit."""
    with _shared_lock:
        if export_dir not in _shared:
            _shared[export_dir] = ExportedModel.load(export_dir, meta)
            atexit.register(_shared[export_dir].close)
        return _shared[export_dir]
