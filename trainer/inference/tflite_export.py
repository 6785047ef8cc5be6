"""TFLite versions of an exported model: windows in, scores and embeddings out, builtin ops only.

    waveform float32 [B, window_samples] -> scores float32 [B, C], embeddings float32 [B, D]
    (signature "serving_default" of the .tflite file; tensor names: core.export_layout)

The batch dimension is dynamic (shape signature [-1, window_samples]); the file's default shape is
[1, window_samples], what an edge recorder scoring one window at a time allocates. Larger batches
(the interpreter resizes its input) let the int8 kernels multiply bigger matrices per call.

The graph is trainer.inference.export_model.Ensemble.score_windows, the same as the SavedModel's
"windows" signature, with the log-mel front end inside. Its STFT converts to TFLite builtins (RFFT2D,
REAL, IMAG: trainer.features.mel takes real and imaginary parts before slicing the used bins, since
TFLite cannot slice a complex tensor), so no Flex (select TF) op is needed: edge runtimes without
the TF kernels can run it. A config whose graph does not convert that way is refused with the reason.

`int8=True` is dynamic-range quantization (converter.optimizations = [tf.lite.Optimize.DEFAULT], no
representative data): weights of convolutions and dense layers stored as int8, activations float32.

The conversion follows Keras' own TFLite path (keras.export.ExportArchive -> SavedModel -> converter).

On a multi-core host, `ParallelInterpreters` scores with one single-threaded interpreter per core, each
on its own share of the windows: TFLite runs one op at a time and its RFFT2D (the log-mel's STFT, a large
share of an int8 model's time) on one thread whatever num_threads says, so one interpreter leaves cores
idle through it; the interpreters' invoke() releases the GIL, so Python threads run them at once.

    from trainer.inference import tflite_export
    float_bytes, int8_bytes = tflite_export.convert(ensemble, trackables=models, variants=(False, True))
    scores, embeddings = tflite_export.run_tflite(path_or_bytes, windows, batch_size=16)  # [B, window]
    scorer = tflite_export.ParallelInterpreters(path, workers=2)                             # one per core
    scores, embeddings = scorer(windows)
"""
from __future__ import annotations

import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from core import export_layout as layout
from core.errors import UserError
from trainer.inference.export_model import Ensemble, window_signature


def _converter(saved_model_dir: str, int8: bool) -> Any:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[layout.RECORDING_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: edge runtimes lack them
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
    return converter


def convert(ensemble: Ensemble, trackables: Sequence[Any], variants: Sequence[bool] = (False, True)) -> list[bytes]:
    """One .tflite flatbuffer per entry of `variants` (False: float32, True: dynamic-range int8)."""
    import keras

    with tempfile.TemporaryDirectory(prefix="tflite-export-") as tmp:
        saved = os.path.join(tmp, "one_window")
        archive = keras.export.ExportArchive()
        for trackable in trackables:
            archive.track(trackable)
        # The TFLite file's only signature; a dynamic batch ([-1, window]; the converter's default shape
        # [1, window] is what an edge recorder scoring one window at a time allocates).
        archive.add_endpoint(layout.RECORDING_SIGNATURE, ensemble.score_windows,
                             input_signature=[window_signature(None, ensemble.window)])
        archive.write_out(saved, verbose=False)
        out = []
        for int8 in variants:
            try:
                out.append(_converter(saved, int8).convert())
            except Exception as e:  # the converter raises its own ConverterError type; keep the first line
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"the model does not convert to TFLite builtin ops ({first}); "
                                f"export with --skip_tflite for the SavedModel alone") from e
        return out


def interpreter(model: str | bytes, num_threads: int | None = None) -> Any:
    """A TFLite interpreter (tf.lite's) for a .tflite path or its bytes, tensors allocated."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to the LiteRT package
        warnings.simplefilter("ignore")
        kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
        it = tf.lite.Interpreter(**kwargs, num_threads=num_threads)
    it.allocate_tensors()
    return it


def run_tflite(model: str | bytes | Any, windows: np.ndarray, batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Scores float32 [B, C] and embeddings float32 [B, D] of windows [B, window], batch_size per call.

    The signature runner resizes the input (and re-plans the delegate) when a call's batch differs
    from the last one's: only the last, partial batch pays that.
    """
    it = model if hasattr(model, "get_signature_runner") else interpreter(model)
    runner = it.get_signature_runner(layout.RECORDING_SIGNATURE)
    windows = np.asarray(windows, np.float32)
    scores, embeddings = [], []
    for start in range(0, len(windows), max(1, batch_size)):
        out = runner(**{layout.INPUT: windows[start:start + max(1, batch_size)]})
        scores.append(out[layout.SCORES])
        embeddings.append(out[layout.EMBEDDINGS])
    return np.concatenate(scores), np.concatenate(embeddings)


class ParallelInterpreters:
    """`workers` single-threaded interpreters of one .tflite model, scoring contiguous shares of the windows
    in parallel threads, `batch_size` windows per call; same outputs as run_tflite, row for row."""

    def __init__(self, model: str | bytes, workers: int | None = None, batch_size: int = 16):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.batch_size = batch_size
        self._interpreters = [interpreter(model, num_threads=1) for _ in range(self.workers)]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tflite")

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = np.asarray(windows, np.float32)  # [B, window]
        share = -(-len(windows) // self.workers)  # ceil: worker k takes windows[k * share : (k + 1) * share]
        parts = [windows[k * share:(k + 1) * share] for k in range(self.workers)]
        jobs = [(it, part) for it, part in zip(self._interpreters, parts) if len(part)]
        outs = list(self._pool.map(lambda job: run_tflite(job[0], job[1], self.batch_size), jobs))
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def close(self) -> None:
        self._pool.shutdown()
