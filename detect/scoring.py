"""One recording's bytes -> its window scores, with any callable model (no Beam; the DoFn and the
benchmark's plain loop share it).

    y = waveform(data, sample_rate=32000, channel=None)             # float32 [n] in [-1, 1)
    ws = score_recording("rec1", y, model, window, stride, sample_rate, batch_size=32)

Audio is decoded as the shards job decodes it (pipeline.audio: channels averaged or one chosen,
resampled with soxr, 16-bit), so a test recording scored here sees the same samples as
trainer.inference.predict sees in the test shards. Windows follow core.windows' rule (the last ends
at the recording's end; a short recording is zero-padded to one window) and are cut batch by batch,
so memory holds one batch of windows, not all of them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from core import schema, windows
from detect.tables import WindowScores
from pipeline import audio

Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # [B, window] -> ([B, C], [B, D])


def waveform(data: bytes, sample_rate: int, channel: int | None, max_seconds: float) -> np.ndarray:
    """float32 [n] at `sample_rate`; audio.AudioError (with its dead-letter reason) for bad bytes."""
    decoded = audio.decode_pcm16(data, sample_rate, max_seconds=max_seconds, channel=channel)
    return decoded.samples.astype(np.float32) / np.float32(schema.PCM16_SCALE)


def score_recording(recording_id: str, y: np.ndarray, model: Model, window: int, stride: int, sample_rate: int,
                    batch_size: int, keep_embeddings: bool = False) -> WindowScores:
    """Scores every window of `y` (float32 [n]); times in seconds, the last end clipped to the recording's end."""
    starts = windows.window_starts(len(y), window, stride)  # [W]
    scores, embeddings = [], []
    for a in range(0, len(starts), batch_size):
        batch = windows.windows_at(y, starts[a:a + batch_size], window)  # [<=B, window]
        s, e = model(batch)
        scores.append(s)
        if keep_embeddings:
            embeddings.append(e)
    ends = np.minimum(starts + window, max(len(y), 1))
    return WindowScores(recording_id, starts / sample_rate, ends / sample_rate, np.concatenate(scores),
                        np.concatenate(embeddings) if keep_embeddings else None)
