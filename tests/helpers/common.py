"""Small helpers shared by the test modules: written once here.

    sklearn_lwlrap(truth, scores)            # the independent LWLRAP reference
    err = expect_user_error(capsys, main, argv, "fragment")   # one `error:` line, exit 2
    clock = FakeClock(start=100.0); clock.now = 110.0
    data = flac_bytes(y, 48000)              # y float or int16 -> FLAC file bytes
    rows = csv_rows("tp", "rec1", (3, 1.0, 2.0), (5, 4.0, 4.5), first=0)   # labels.CsvRow tuple
"""
from __future__ import annotations

import io
import pathlib
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import label_ranking_average_precision_score

from core.errors import run_main


def sklearn_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """LWLRAP as sklearn's label-ranking AP over rows weighted by their number of positives (the DCASE
    definition), rows without a positive left out: independent of trainer.evaluation.lwlrap."""
    truth = np.asarray(truth)
    positives = (truth > 0).sum(axis=1)
    keep = positives > 0
    return label_ranking_average_precision_score(truth[keep] > 0, np.asarray(scores)[keep],
                                                 sample_weight=positives[keep])


def expect_user_error(capsys: Any, main: Callable[[Sequence[str]], Any], argv: Sequence[str], *fragments: str,
                      only_line: bool = False) -> str:
    """main(argv) under run_main must exit 2 with an `error:` line (the last on stderr; with only_line, the
    only one) holding every fragment. Returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, list(argv))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    if only_line:
        assert len(lines) == 1, lines
    err = lines[-1]
    assert err.startswith("error: "), lines
    for fragment in fragments:
        assert fragment in err, err
    return err


REPO = str(pathlib.Path(__file__).resolve().parents[2])  # the repository root: cwd of subprocess runs


class FakeClock:
    """A clock the test moves by hand (`clock.now = t`), for the progress lines' intervals."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def flac_bytes(y: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    """A FLAC file of samples `y` (float in [-1, 1] or int16; [n] or [n, channels]) at rate `sr`."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="FLAC", subtype=subtype)
    return buf.getvalue()


def csv_rows(kind: str, rid: str, *boxes: tuple[int, float, float], first: int = 0) -> tuple:
    """labels.CsvRow of `kind` ("tp"/"fp") for recording `rid`, one per (species, t_min, t_max) box, row
    indices from `first`; songtype 1, 100-900 Hz."""
    from pipeline import (
        labels,  # the Beam job's type; imported here so trainer-only tests need not load it
    )

    return tuple(labels.CsvRow(kind, first + i, {"recording_id": rid, "species_id": str(s), "songtype_id": "1",
                                                 "t_min": str(a), "f_min": "100", "t_max": str(b), "f_max": "900"})
                 for i, (s, a, b) in enumerate(boxes))
