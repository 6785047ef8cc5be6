"""TFLite versions of an exported model: one window in, scores and embeddings out, builtin ops only.

    waveform float32 [1, window_samples] -> scores float32 [1, C], embeddings float32 [1, D]
    (signature "serving_default" of the .tflite file; tensor names: core.export_layout)

The graph is trainer.inference.export_model.Ensemble.score_windows, the same as the SavedModel's
"windows" signature, with the log-mel front end inside. Its STFT converts to TFLite builtins (RFFT2D,
REAL, IMAG: trainer.features.mel takes real and imaginary parts before slicing the used bins, since
TFLite cannot slice a complex tensor), so no Flex (select TF) op is needed: edge runtimes without
the TF kernels can run it. A config whose graph does not convert that way is refused with the reason.

`int8=True` is dynamic-range quantization (converter.optimizations = [tf.lite.Optimize.DEFAULT], no
representative data): weights of convolutions and dense layers stored as int8, activations float32.

The conversion follows Keras' own TFLite path (keras.export.ExportArchive -> SavedModel -> converter).

    from trainer.inference import tflite_export
    float_bytes, int8_bytes = tflite_export.convert(ensemble, trackables=models, variants=(False, True))
    scores, embeddings = tflite_export.run_tflite(path_or_bytes, windows)    # [B, window] one at a time
"""
from __future__ import annotations

import os
import tempfile
import warnings
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
        # The TFLite file's only signature; a fixed [1, window] input (edge recorders score one window at a time).
        archive.add_endpoint(layout.RECORDING_SIGNATURE, ensemble.score_windows,
                             input_signature=[window_signature(1, ensemble.window)])
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


def run_tflite(model: str | bytes | Any, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores float32 [B, C] and embeddings float32 [B, D] of windows [B, window], one window per call."""
    it = model if hasattr(model, "get_signature_runner") else interpreter(model)
    runner = it.get_signature_runner(layout.RECORDING_SIGNATURE)
    scores, embeddings = [], []
    for window in np.asarray(windows, np.float32):
        out = runner(**{layout.INPUT: window[np.newaxis]})
        scores.append(out[layout.SCORES][0])
        embeddings.append(out[layout.EMBEDDINGS][0])
    return np.stack(scores), np.stack(embeddings)
