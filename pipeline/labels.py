"""train_tp.csv / train_fp.csv: reading (local or gs://), column checks, row validation with reasons.

Rows are kept as the original strings (so a dead letter shows exactly what was in the file) and
parsed into `Box`es here. Row-level problems are found without the audio; whether an event lies
inside its recording is checked once the recording's length is known (`outside_recording`).

    table = read_csv(fs.join(data_dir, "train_tp.csv"), required=True)
    valid, rejections = validate_rows(csv_rows, num_classes=24)  # [CsvRow] -> [(CsvRow, Box)], [Rejection]
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
from typing import Iterable, Mapping

import pandas as pd

from core import checks, fs
from core.errors import UserError

# The training CSVs of the RFCX layout (in the data dir).
TP_CSV, FP_CSV = "train_tp.csv", "train_fp.csv"
REQUIRED_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max")
INTEGER_COLUMNS = ("species_id", "songtype_id")

# Row rejection reasons (dead-letter `reason` and counter names).
MISSING_RECORDING_ID = "missing_recording_id"
BAD_RECORDING_ID = "bad_recording_id"
NAN_VALUE = "nan_value"
NOT_A_NUMBER = "not_a_number"
NOT_AN_INTEGER = "not_an_integer"
SPECIES_OUT_OF_RANGE = "species_out_of_range"
SONGTYPE_OUT_OF_RANGE = "songtype_out_of_range"
# songtype_id is a small non-negative code (RFCX: 1 and 4); the bound keeps it exact as a float and
# within the examples' int64 fields (an id of 20 digits made the whole recording fail).
MAX_SONGTYPE_ID = 2**31 - 1
NEGATIVE_TIME = "negative_time"
T_MIN_NOT_BEFORE_T_MAX = "t_min_not_before_t_max"
BAD_FREQUENCY = "bad_frequency"
DUPLICATE_ROW = "duplicate_row"
EVENT_OUTSIDE_RECORDING = "event_outside_recording"
# File reasons (a recording's rows are rejected with the reason of its file).
MISSING_FLAC = "missing_flac"
WORKER_ERROR = "worker_error"  # any other exception while processing one recording

# A recording id names a file inside train/ or test/: letters, digits, "_", "." and "-" only, and
# no "..", so that no id can reach outside the data dir (`../test/x`, `/abs/path`, `a/b`).
_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
# ASCII decimal numbers only: float() also takes "1_4", full-width digits and surrounding spaces.
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
# An integer field: digits, optionally with a zero fraction as float-typed CSV writers produce ("7.0").
_INTEGER = re.compile(r"[+-]?[0-9]+(\.0*)?")


@dataclasses.dataclass(frozen=True)
class CsvTable:
    """A CSV read as strings: rows are {column: original text}."""

    path: str
    columns: tuple[str, ...]
    rows: tuple[dict, ...]
    sha256: str


@dataclasses.dataclass(frozen=True)
class CsvRow:
    """One data row of train_tp.csv ("tp") or train_fp.csv ("fp"); row_index is 0-based."""

    kind: str
    row_index: int
    raw: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Box:
    """A validated annotation box (seconds, Hz)."""

    row_index: int
    is_tp: bool
    species_id: int
    songtype_id: int
    t_min: float
    t_max: float
    f_min: float
    f_max: float


@dataclasses.dataclass(frozen=True)
class Rejection:
    """One dead letter: a row or file the job could not use, and why."""

    kind: str  # "tp" | "fp" | "background" | "test"
    row_index: int | None
    recording_id: str
    reason: str
    detail: str
    row: Mapping[str, str] | None = None
    path: str | None = None
    error_type: str | None = None  # the exception's type, for `worker_error`

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def read_text_csv(path: str, what: str) -> tuple[pd.DataFrame, bytes]:
    """Every cell of the CSV at `path` as the string written (no NaN guessing), and the file's bytes.

    UserError naming `what` for a directory or unreadable local file, or text that is no CSV.
    """
    checks.input_file(what, path)
    data = fs.read_bytes(path)
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False), data
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable CSV: {e}") from e


def read_csv(path: str, required: bool) -> CsvTable | None:
    """Reads a CSV with the RFCX columns; None when it is absent and not `required`."""
    if not fs.exists(path):
        if required:
            raise UserError(f"{path} not found")
        return None
    df, data = read_text_csv(path, "CSV file")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks required column(s) {', '.join(missing)}; "
                        f"expected {', '.join(REQUIRED_COLUMNS)}")
    return CsvTable(path, tuple(df.columns), tuple(df.to_dict("records")), hashlib.sha256(data).hexdigest())


def recording_key(raw: Mapping[str, str]) -> str:
    """The recording id of a CSV row as the job groups, validates and names files by it."""
    return str(raw["recording_id"]).strip()


def is_safe_id(recording_id: str) -> bool:
    """True when `recording_id` can only name a file directly inside train/ or test/."""
    return bool(_SAFE_ID.fullmatch(recording_id)) and ".." not in recording_id


def _is_finite_float(text: str) -> bool:
    """Whether Python's float() reads `text` as a finite number (it is lenient: "1_4", "１", "1e1")."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number(text: str) -> float:
    """Parses a CSV cell; '' and NaN/inf spellings give non-finite values, non-numbers raise ValueError."""
    text = text.strip()
    if text == "":
        return math.nan
    value = float(text)  # ValueError for plain garbage
    if math.isfinite(value) and not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a plain decimal number")
    return value


def parse_row(row: CsvRow, num_classes: int) -> tuple[Box | None, str, str]:
    """(box, "", "") for a valid row, else (None, reason, detail)."""
    raw = row.raw
    rid = recording_key(raw)
    if not rid:
        return None, MISSING_RECORDING_ID, "recording_id is empty"
    if not is_safe_id(rid):
        return None, BAD_RECORDING_ID, (f"recording_id={raw['recording_id']!r}: only letters, digits, '_', '.' "
                                        f"and '-' (no '..') may name a file inside the data dir")
    for col in INTEGER_COLUMNS:
        text = str(raw[col]).strip()
        if _is_finite_float(text) and not _INTEGER.fullmatch(text):
            return None, NOT_AN_INTEGER, f"{col}={raw[col]!r} is not a plain decimal integer"
    values = {}
    for col in REQUIRED_COLUMNS[1:]:
        try:
            values[col] = _number(str(raw[col]))
        except ValueError:
            return None, NOT_A_NUMBER, f"{col}={raw[col]!r} is not a number"
        if math.isnan(values[col]) or math.isinf(values[col]):
            return None, NAN_VALUE, f"{col}={raw[col]!r}"
    if not 0 <= values["species_id"] < num_classes:
        return None, SPECIES_OUT_OF_RANGE, f"species_id={raw['species_id']} outside 0..{num_classes - 1}"
    if not 0 <= values["songtype_id"] <= MAX_SONGTYPE_ID:
        return None, SONGTYPE_OUT_OF_RANGE, f"songtype_id={raw['songtype_id']} outside 0..{MAX_SONGTYPE_ID}"
    if values["t_min"] < 0 or values["t_max"] < 0:
        return None, NEGATIVE_TIME, f"t_min={raw['t_min']} t_max={raw['t_max']}"
    if values["t_min"] >= values["t_max"]:
        return None, T_MIN_NOT_BEFORE_T_MAX, f"t_min={raw['t_min']} >= t_max={raw['t_max']}"
    if values["f_min"] < 0 or values["f_min"] >= values["f_max"]:
        return None, BAD_FREQUENCY, f"f_min={raw['f_min']} f_max={raw['f_max']}"
    box = Box(row.row_index, row.kind == "tp", int(values["species_id"]), int(values["songtype_id"]),
              values["t_min"], values["t_max"], values["f_min"], values["f_max"])
    return box, "", ""


def reject_row(row: CsvRow, reason: str, detail: str, error_type: str | None = None) -> Rejection:
    return Rejection(row.kind, row.row_index, str(row.raw["recording_id"]), reason, detail, row=dict(row.raw),
                     error_type=error_type)


def _normalised(column: str, text: str) -> object:
    """A cell as the job reads it: stripped, and numeric columns by value ("1" == " 1.0")."""
    text = text.strip()
    if column in REQUIRED_COLUMNS[1:]:
        try:
            value = _number(text)
        except ValueError:
            return text
        return "nan" if math.isnan(value) else value
    return text


def duplicate_key(row: CsvRow) -> tuple:
    """Rows with equal keys are the same annotation: fields normalised as grouping and parsing read them."""
    return (row.kind,) + tuple(sorted((k, _normalised(k, str(v))) for k, v in row.raw.items()))


def validate_rows(rows: Iterable[CsvRow], num_classes: int) -> tuple[list[tuple[CsvRow, Box]], list[Rejection]]:
    """Valid (row, box) pairs and rejections; of duplicate rows (duplicate_key) the first is kept."""
    seen: dict[tuple, int] = {}
    valid, rejected = [], []
    for row in rows:
        key = duplicate_key(row)
        if key in seen:
            rejected.append(reject_row(row, DUPLICATE_ROW, f"same as {row.kind} row {seen[key]}"))
            continue
        seen[key] = row.row_index
        box, reason, detail = parse_row(row, num_classes)
        if box is None:
            rejected.append(reject_row(row, reason, detail))
        else:
            valid.append((row, box))
    return valid, rejected


def above_nyquist(box: Box, sample_rate: int) -> str:
    """Detail text when the box reaches above the Nyquist frequency of audio at `sample_rate`, else ''.

    The rate is the lower of the file's and the shards' (no frequency above either half exists in the
    slice), so it is known only once the file is decoded.
    """
    nyquist = sample_rate / 2
    if box.f_max > nyquist:
        return f"f_min={box.f_min:g} f_max={box.f_max:g} Hz above the Nyquist frequency {nyquist:g} Hz"
    return ""


def outside_recording(box: Box, duration_s: float, sample_rate: int) -> str:
    """Detail text when the box does not fit in a recording of `duration_s` seconds, else ''."""
    # One sample of slack: annotators' t_max often equals the recording length exactly.
    if box.t_max > duration_s + 1.0 / sample_rate:
        return f"t_max={box.t_max} beyond the recording's {duration_s:.3f} s"
    # An event starting at (or after) the end has no sample in any slice, not even its own.
    if box.t_min >= duration_s:
        return f"t_min={box.t_min} at or beyond the recording's end ({duration_s:.3f} s)"
    return ""
