"""Raven selection tables: the one module that writes them (the detection job) and reads them (the importer).

A selection table is tab-separated text, one header line, one line per selection (Raven Pro's
"File > Save Selection Table"). The detection job writes the standard columns below; tables made by
people in Raven hold the same time/frequency columns plus their own annotation column(s), and
often every selection twice (one line per view: "Waveform 1", "Spectrogram 1").

    text = raven.format_table([raven.Selection(1.0, 2.0, 0.0, 24000.0, "s3", score=0.91)])
    table = raven.parse_table(text, where="rec1.Table.1.selections.txt")   # RavenTable
    table.rows[0].fields["Begin Time (s)"], table.rows[0].line              # strings as written
    raven.selections(table)                                                 # [Selection] (floats)

The parser keeps values as the strings written (with their line numbers) so that a reader can
report a bad value exactly; `selections` converts them and raises RavenError naming the line.
No I/O here: callers read and write through core.fs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

SELECTION, VIEW, CHANNEL = "Selection", "View", "Channel"
BEGIN, END = "Begin Time (s)", "End Time (s)"
LOW, HIGH = "Low Freq (Hz)", "High Freq (Hz)"
SPECIES, SCORE = "Species", "Score"
COLUMNS = (SELECTION, VIEW, CHANNEL, BEGIN, END, LOW, HIGH, SPECIES, SCORE)
BOX_COLUMNS = (BEGIN, END, LOW, HIGH)
DEFAULT_VIEW = "Spectrogram 1"
# Raven's column naming the audio file of a selection (tables made over several files).
BEGIN_FILE = "Begin File"
# Annotation columns people use for the species, tried in this order (case-insensitive) when the
# reader is not told which one.
SPECIES_COLUMNS = ("Species", "Annotation", "Label", "Class", "Species Code", "Common Name", "Code")
# Raven appends this to a table's file name: rec1.Table.1.selections.txt is the table of rec1.
TABLE_SUFFIX = ".Table.1.selections"


class RavenError(ValueError):
    """A table that cannot be read (no header, missing column) or a value that is not what its column needs."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """One box: seconds from the recording's start, Hz; score only for a model's detections."""

    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float
    species: str
    score: float | None = None
    channel: int = 1  # Raven counts channels from 1
    line: int = 0  # 1-based line in the table it was read from (0: not read from a file)


@dataclasses.dataclass(frozen=True)
class RavenRow:
    """One data line as written: {column: text}; `line` is 1-based in the file (the header is line 1)."""

    line: int
    fields: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class RavenTable:
    where: str
    columns: tuple[str, ...]
    rows: tuple[RavenRow, ...]
    species_column: str | None

    def value(self, row: RavenRow, column: str) -> str:
        return str(row.fields.get(column, "")).strip()


def _clean(text: str) -> str:
    """Tabs and line breaks would break the table's structure; a name keeps its other characters."""
    return " ".join(str(text).replace("\t", " ").splitlines())


def format_table(selections: Iterable[Selection], view: str = DEFAULT_VIEW) -> str:
    """The standard columns, selections numbered from 1 in the order given; a header alone when empty."""
    lines = ["\t".join(COLUMNS)]
    for i, s in enumerate(selections, start=1):
        score = "" if s.score is None else f"{s.score:.6f}"
        lines.append("\t".join([str(i), view, str(s.channel), f"{s.begin_s:.6f}", f"{s.end_s:.6f}",
                                f"{s.low_hz:.1f}", f"{s.high_hz:.1f}", _clean(s.species), score]))
    return "\n".join(lines) + "\n"


def find_species_column(columns: Sequence[str], wanted: str | None = None) -> str | None:
    """The column holding species names: `wanted` if given (RavenError when absent), else the first of
    SPECIES_COLUMNS present (any letter case), else None."""
    by_lower = {c.lower(): c for c in columns}
    if wanted:
        if wanted.lower() not in by_lower:
            raise RavenError(f"no species column {wanted!r} (columns: {', '.join(columns)})")
        return by_lower[wanted.lower()]
    for name in SPECIES_COLUMNS:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def parse_table(text: str, where: str = "selection table", species_column: str | None = None) -> RavenTable:
    """A selection table's text -> RavenTable; RavenError for a missing header or box column, or a line
    with more fields than the header. Blank lines are skipped. When a Selection and a View column exist,
    a selection repeated in another view ("Waveform 1" beside "Spectrogram 1") is kept once, from its
    spectrogram view's line."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not lines[0].strip():
        raise RavenError(f"{where}: empty, no header line")
    columns = tuple(c.strip() for c in lines[0].split("\t"))
    missing = [c for c in BOX_COLUMNS if c not in columns]
    if missing:
        raise RavenError(f"{where}: missing column(s) {', '.join(missing)} (a Raven selection table is tab-separated "
                         f"with {', '.join(BOX_COLUMNS)}; header read: {', '.join(columns)})")
    species = find_species_column(columns, species_column)
    rows: list[RavenRow] = []
    slot: dict[str, int] = {}  # selection number -> its index in rows
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) > len(columns):
            raise RavenError(f"{where} line {number}: {len(values)} tab-separated fields, the header has "
                             f"{len(columns)}")
        row = RavenRow(number, dict(zip(columns, values + [""] * (len(columns) - len(values)))))
        key = row.fields.get(SELECTION, "").strip()
        if key and VIEW in columns:
            if key in slot:
                # The same selection in another view: the spectrogram's line holds its frequencies
                # (a waveform view's are 0).
                if row.fields[VIEW].strip().lower().startswith("spectrogram"):
                    rows[slot[key]] = row
                continue
            slot[key] = len(rows)
        rows.append(row)
    return RavenTable(where, columns, tuple(rows), species)


def number(text: str, column: str, where: str, line: int) -> float:
    """A finite float from a table cell, else RavenError naming the file, line and column."""
    try:
        value = float(text)
    except ValueError:
        raise RavenError(f"{where} line {line}: {column}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise RavenError(f"{where} line {line}: {column}={text!r} is not a finite number")
    return value


def selections(table: RavenTable) -> list[Selection]:
    """Every row as a Selection (species "" without a species column); RavenError at the first bad value."""
    out = []
    for row in table.rows:
        begin, end, low, high = (number(table.value(row, c), c, table.where, row.line) for c in BOX_COLUMNS)
        score_text = table.value(row, SCORE) if SCORE in table.columns else ""
        channel_text = table.value(row, CHANNEL) if CHANNEL in table.columns else ""
        out.append(Selection(begin, end, low, high,
                             table.value(row, table.species_column) if table.species_column else "",
                             number(score_text, SCORE, table.where, row.line) if score_text else None,
                             int(number(channel_text, CHANNEL, table.where, row.line)) if channel_text else 1,
                             row.line))
    return out


def recording_id_of(file_name: str) -> str:
    """rec1.Table.1.selections.txt -> rec1; rec1.txt -> rec1 (the file's stem otherwise)."""
    stem = file_name.rsplit("/", 1)[-1]
    if stem.lower().endswith(".txt"):
        stem = stem[:-4]
    if stem.endswith(TABLE_SUFFIX):
        stem = stem[: -len(TABLE_SUFFIX)]
    return stem
