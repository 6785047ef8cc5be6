"""pipeline.import_annotations: Raven tables and CSVs of boxes -> train_tp.csv / train_fp.csv the shards job reads,
bad rows reported with file, line and reason."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from core import raven
from pipeline import import_annotations, labels
from tests.core.test_raven import RAVEN_PRO
from tests.helpers.common import expect_user_error


@pytest.fixture
def tables(tmp_path):
    tp, fp = tmp_path / "tp", tmp_path / "fp"
    tp.mkdir()
    fp.mkdir()
    (tp / "rec1.Table.1.selections.txt").write_text(RAVEN_PRO)
    # As the detection job writes them (OUT/raven/<id>.txt): Species column, scores beside.
    (tp / "rec2.txt").write_text(raven.format_table([raven.Selection(3.0, 13.0, 0.0, 24000.0, "coqui", 0.93)]))
    (fp / "rec3.txt").write_text(raven.format_table([raven.Selection(20.5, 22.0, 500.0, 1500.0, "parrot sp.")]))
    species = tmp_path / "species.txt"
    species.write_text("toad\ncoqui\nparrot sp.\n")
    return tmp_path, str(tp), str(fp), str(species)


def _csv(path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_raven_tables_become_the_rfcx_csvs(tables):
    root, tp, fp, species = tables
    out = root / "data"
    counts = import_annotations.run(["--raven_dir", tp, "--fp_raven_dir", fp, "--species", species,
                                     "--out_dir", str(out)])
    assert counts == {"tp": 3, "fp": 1, "bad": 0, "read": 4}
    assert _csv(out / "train_tp.csv") == [list(labels.REQUIRED_COLUMNS),
                                          ["rec1", "1", "1", "1.25", "1200", "2.75", "4300"],
                                          ["rec1", "2", "1", "10", "2500", "12.5", "9000"],
                                          ["rec2", "1", "1", "3", "0", "13", "24000"]]
    assert _csv(out / "train_fp.csv") == [list(labels.REQUIRED_COLUMNS), ["rec3", "2", "1", "20.5", "500", "22", "1500"]]
    # What the shards job reads from them: every row valid.
    table = labels.read_csv(str(out / "train_tp.csv"), required=True)
    valid, rejected = labels.validate_rows([labels.CsvRow("tp", i, r) for i, r in enumerate(table.rows)], 3)
    assert len(valid) == 3 and rejected == []


def test_bad_rows_stop_the_import_naming_file_line_and_reason(capsys, tables):
    root, tp, _, species = tables
    bad = ("Selection\tView\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\n"
           "1\tSpectrogram 1\t1.0\t2.0\t100\t200\tcoqui\n"
           "2\tSpectrogram 1\t5.0\t4.0\t100\t200\tcoqui\n"
           "3\tSpectrogram 1\t1.0\t2.0\t100\tloud\tcoqui\n"
           "4\tSpectrogram 1\t1.0\t2.0\t100\t200\tjaguar\n"
           "5\tSpectrogram 1\t1.0\t2.0\t100\t200\tcoqui\n")
    (root / "tp" / "rec9.txt").write_text(bad)
    out = root / "data"
    err = expect_user_error(capsys, import_annotations.main, ["--raven_dir", tp, "--species", species,
                                                              "--out_dir", str(out)], "4 bad annotation row(s)")
    where = str(root / "tp" / "rec9.txt")
    for line, reason in ((3, "t_min_not_before_t_max"), (4, "not_a_number"), (5, "unknown_species"),
                         (6, "duplicate_row")):
        assert f"{where} line {line}: {reason}" in err
    assert not out.exists()
    counts = import_annotations.run(["--raven_dir", tp, "--species", species, "--out_dir", str(out),
                                     "--skip_bad_rows"])
    assert counts == {"tp": 4, "fp": 0, "bad": 4, "read": 8}
    rejected = [json.loads(line) for line in (out / "import_rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(3, "t_min_not_before_t_max"), (4, "not_a_number"),
                                                            (5, "unknown_species"), (6, "duplicate_row")]
    assert "WARNING: 4 bad row(s) skipped" in capsys.readouterr().out


def test_a_csv_of_boxes_with_a_species_csv_list(capsys, tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("recording_id,species,t_min,t_max,f_min,f_max,kind\n"
                     "a,s1,0.5,1.5,100,900,tp\nb,s0,2,3,50,60,fp\nc,s1,1,2,100,900,TP\n")
    species = tmp_path / "species.csv"
    species.write_text("name,id\ns0,0\ns1,1\n")  # the detection job's OUT/species.csv
    out = tmp_path / "data"
    import_annotations.run(["--boxes_csv", str(boxes), "--species", str(species), "--out_dir", str(out),
                            "--songtype_id", "4"])
    tp = pd.read_csv(out / "train_tp.csv")
    assert tp.values.tolist() == [["a", 1, 4, 0.5, 100, 1.5, 900], ["c", 1, 4, 1, 100, 2, 900]]
    assert pd.read_csv(out / "train_fp.csv").values.tolist() == [["b", 0, 4, 2, 50, 3, 60]]
    expect_user_error(capsys, import_annotations.main, ["--boxes_csv", str(boxes), "--species", str(species),
                                                        "--out_dir", str(out)], "exist(s); pass --overwrite")


@pytest.mark.parametrize("args, fragment", [
    (["--raven_dir", "TP", "--boxes_csv", "x.csv"], "either --raven_dir"),
    (["--raven_dir", "TP", "--species_column", "Label"], "no species column 'Label'"),
    (["--raven_dir", "EMPTY"], "holds no .txt selection table"),
])
def test_mistakes_stop_with_one_error_line(capsys, tables, args, fragment):
    root, tp, _, species = tables
    (root / "empty").mkdir()
    args = [{"TP": tp, "EMPTY": str(root / "empty")}.get(a, a) for a in args]
    expect_user_error(capsys, import_annotations.main, args + ["--species", species, "--out_dir", str(root / "d")],
                      fragment)


def test_a_species_list_with_a_repeated_name_is_refused(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("a\nb\na\n")
    with pytest.raises(Exception, match="species listed twice: a"):
        import_annotations.read_species_list(str(path))
