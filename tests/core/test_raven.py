"""core.raven: tables the detection job writes parse back; tables as Raven Pro saves them are read."""
from __future__ import annotations

import pytest

from core import raven

# As Raven Pro saves one: every selection once per view, an "Annotation" column, extra measurements.
RAVEN_PRO = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tDelta Time (s)\tAnnotation\n"
    "1\tWaveform 1\t1\t1.250000\t2.750000\t0.000\t0.000\t1.5000\tcoqui\n"
    "1\tSpectrogram 1\t1\t1.250000\t2.750000\t1200.000\t4300.000\t1.5000\tcoqui\n"
    "2\tWaveform 1\t1\t10.0\t12.5\t0.000\t0.000\t2.5000\tparrot sp.\n"
    "2\tSpectrogram 1\t1\t10.0\t12.5\t2500.0\t9000.0\t2.5000\tparrot sp.\n"
    "\n"
)


def test_a_written_table_parses_back_to_its_selections():
    written = [raven.Selection(0.0, 10.0, 0.0, 24000.0, "s3", 0.912345, 1),
               raven.Selection(5.25, 15.25, 100.0, 8000.0, "Eleutherodactylus coqui", 0.5, 2),
               raven.Selection(7.0, 8.0, 10.0, 20.0, "no score")]
    table = raven.parse_table(raven.format_table(written), where="t.txt")
    assert table.columns == raven.COLUMNS and table.species_column == "Species"
    got = raven.selections(table)
    assert [(s.begin_s, s.end_s, s.low_hz, s.high_hz, s.species, s.score, s.channel) for s in got] == [
        (0.0, 10.0, 0.0, 24000.0, "s3", 0.912345, 1), (5.25, 15.25, 100.0, 8000.0, "Eleutherodactylus coqui", 0.5, 2),
        (7.0, 8.0, 10.0, 20.0, "no score", None, 1)]
    assert [s.line for s in got] == [2, 3, 4]
    assert [r.fields["Selection"] for r in table.rows] == ["1", "2", "3"]


def test_an_empty_table_is_a_header_alone():
    text = raven.format_table([])
    assert text == "\t".join(raven.COLUMNS) + "\n"
    assert raven.selections(raven.parse_table(text)) == []


def test_a_species_name_with_a_tab_keeps_the_table_parseable():
    text = raven.format_table([raven.Selection(1, 2, 3, 4, "a\tb\nc")])
    assert raven.selections(raven.parse_table(text))[0].species == "a b c"


def test_a_raven_pro_table_gives_each_selection_once_with_its_annotation():
    table = raven.parse_table(RAVEN_PRO, where="rec1.Table.1.selections.txt")
    assert table.species_column == "Annotation"
    got = raven.selections(table)
    assert [(s.begin_s, s.end_s, s.low_hz, s.high_hz, s.species, s.line) for s in got] == [
        (1.25, 2.75, 1200.0, 4300.0, "coqui", 3), (10.0, 12.5, 2500.0, 9000.0, "parrot sp.", 5)]


def test_the_species_column_can_be_named():
    text = RAVEN_PRO.replace("Annotation", "Especie")
    assert raven.parse_table(text).species_column is None
    assert raven.parse_table(text, species_column="especie").species_column == "Especie"
    with pytest.raises(raven.RavenError, match="no species column 'Sp'"):
        raven.parse_table(text, species_column="Sp")


@pytest.mark.parametrize("text, message", [
    ("", "empty, no header line"),
    ("Selection\tBegin Time (s)\tEnd Time (s)\n1\t0\t1\n", "missing column(s) Low Freq (Hz), High Freq (Hz)"),
    ("Begin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\n0\t1\t2\t3\t4\n", "line 2: 5 tab-separated fields"),
])
def test_a_broken_table_is_refused_with_the_reason(text, message):
    with pytest.raises(raven.RavenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        raven.parse_table(text, where="x.txt")


def test_a_bad_value_names_its_line_and_column():
    text = "Begin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\n0\t1\t2\t3\n0\tlater\t2\t3\n"
    with pytest.raises(raven.RavenError, match=r"x.txt line 3: End Time \(s\)='later' is not a number"):
        raven.selections(raven.parse_table(text, where="x.txt"))


def test_recording_id_of_a_table_file():
    assert raven.recording_id_of("dir/rec1.Table.1.selections.txt") == "rec1"
    assert raven.recording_id_of("rec_2.txt") == "rec_2"
