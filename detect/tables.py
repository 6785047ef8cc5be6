"""Window scores -> the tables users read: detection rows, Raven selections, the Kaggle submission (pure numpy).

    scores = WindowScores("rec1", starts_s, ends_s, scores)           # scores float32 [W, C]
    rows = detection_rows(scores, thresholds)                          # [(id, start_s, end_s, species_id, score)]
    text = raven_table(rows, species, nyquist_hz=24000.0)              # core.raven's layout
    frame = submission_frame({"rec1": scores.max_scores()}, ids, C)    # recording_id,s0..s{C-1}

A detection is one window x species whose score reaches that species' threshold; its box spans the
window's time and the whole band (the model gives no frequency), 0 Hz to the Nyquist frequency.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from core import raven

DETECTION_COLUMNS = ("recording_id", "start_s", "end_s", "species_id", "score")


@dataclasses.dataclass(frozen=True)
class WindowScores:
    """One recording's windows: times in seconds [W], scores float32 [W, C], embeddings [W, D] or None."""

    recording_id: str
    start_s: np.ndarray
    end_s: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None = None

    def max_scores(self) -> np.ndarray:
        """float32 [C]: the recording's score per species (max over windows, as trainer.inference.predict)."""
        return self.scores.max(axis=0)


def detection_rows(ws: WindowScores, thresholds: Sequence[float]) -> list[tuple[str, float, float, int, float]]:
    """(recording_id, start_s, end_s, species_id, score) where score >= the species' threshold; by window, species."""
    hits = np.argwhere(ws.scores >= np.asarray(thresholds, dtype=np.float32)[None, :])  # [K, 2] (window, species)
    return [(ws.recording_id, float(ws.start_s[w]), float(ws.end_s[w]), int(c), float(ws.scores[w, c]))
            for w, c in hits]


def raven_table(rows: Sequence[tuple], species: Sequence[str], nyquist_hz: float, channel: int = 1) -> str:
    """A Raven selection table of one recording's detection rows (core.raven.format_table)."""
    return raven.format_table(raven.Selection(start, end, 0.0, nyquist_hz, species[c], score, channel)
                              for _, start, end, c, score in rows)


def detections_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """detections.csv: rows sorted by recording, start, species."""
    frame = pd.DataFrame(list(rows), columns=list(DETECTION_COLUMNS))
    return frame.sort_values(["recording_id", "start_s", "species_id"], kind="stable").reset_index(drop=True)


def submission_frame(max_scores: Mapping[str, np.ndarray], ids: Sequence[str], num_classes: int) -> pd.DataFrame:
    """recording_id,s0..s{C-1} in the order of `ids`; KeyError for an id without scores."""
    table = np.stack([np.asarray(max_scores[i], np.float32) for i in ids]) if ids else np.zeros((0, num_classes))
    frame = pd.DataFrame(table, columns=[f"s{k}" for k in range(num_classes)])
    frame.insert(0, "recording_id", list(ids))
    return frame
