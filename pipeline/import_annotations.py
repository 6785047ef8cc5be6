"""Users' own annotations -> the RFCX layout's train_tp.csv / train_fp.csv that `make shards` reads (no TensorFlow).

    python -m pipeline.import_annotations --species species.txt --out_dir DATA \
        (--raven_dir tables/ [--fp_raven_dir fp_tables/] | --boxes_csv boxes.csv)
        [--species_column Species] [--songtype_id 1] [--skip_bad_rows] [--overwrite]

Raven selection tables (core.raven: tab-separated, Begin/End Time (s), Low/High Freq (Hz) and a species
column): every .txt under --raven_dir is a table of true positives, under --fp_raven_dir of false
positives (the species is known absent there). A row's recording is the stem of its "Begin File"
column when the table has one, else the table's name (rec1.Table.1.selections.txt -> rec1).
A CSV of boxes has columns recording_id, t_min, t_max, f_min, f_max, species (a name) or species_id,
and optionally songtype_id and kind (tp or fp; default tp).

--species names the species list: one name per line (its id is its line number from 0), or a CSV
with columns name,id (the detection job writes one: OUT/species.csv). Names are matched exactly.

Every row is checked as the shards job checks train_tp.csv (pipeline.labels: numbers, times, frequencies,
duplicates) plus `unknown_species`; a bad row is reported with its file, line and reason. Any bad row
stops the import (nothing written) unless --skip_bad_rows, which writes the good rows and every bad one
to DATA/import_rejected.jsonl.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Sequence

from core import checks, fs, raven, settings
from core.errors import UserError, run_main
from pipeline import labels

UNKNOWN_SPECIES = "unknown_species"
REJECTED_FILE = "import_rejected.jsonl"
SHOWN = 10  # bad rows named in the error line


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """Settings of one import (saved as DATA/import_config.json)."""

    species: str = dataclasses.field(metadata={"help": "species list: one name per line, or a CSV name,id"})
    out_dir: str = dataclasses.field(metadata={"help": "where train_tp.csv / train_fp.csv go (the dataset dir)"})
    raven_dir: str = dataclasses.field(default="", metadata={"help": "folder of Raven selection tables (tp)"})
    fp_raven_dir: str = dataclasses.field(default="", metadata={"help": "folder of Raven selection tables of "
                                                                        "false positives"})
    boxes_csv: str = dataclasses.field(default="", metadata={"help": "CSV of boxes (instead of Raven tables)"})
    species_column: str = dataclasses.field(default="", metadata={"help": "Raven column of the species "
                                                                            "(default: Species, Annotation, ...)"})
    songtype_id: int = dataclasses.field(default=1, metadata={"help": "songtype of rows that give none"})
    skip_bad_rows: bool = dataclasses.field(default=False, metadata={"help": "write the good rows, bad ones to "
                                                                             f"{REJECTED_FILE}"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace existing train_tp/fp.csv"})

    def __post_init__(self) -> None:
        settings.check_types(self, UserError)


@dataclasses.dataclass(frozen=True)
class SourceRow:
    """One annotation as RFCX columns (strings as written), and where it came from."""

    kind: str  # "tp" | "fp"
    where: str
    line: int
    raw: dict


def read_species_list(path: str) -> dict[str, int]:
    """{name: id} from one name per line (id = line index) or a CSV with columns name,id."""
    checks.input_file("--species", path)
    text = fs.read_text(path).lstrip("\ufeff")
    lines = [line.strip() for line in text.splitlines()]
    if lines and "," in lines[0]:
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or not {"name", "id"} <= set(rows[0]):
            raise UserError(f"{path}: a CSV species list needs columns name,id")
        pairs = []
        for i, r in enumerate(rows, start=2):
            if not str(r["id"]).strip().isdigit():
                raise UserError(f"{path} line {i}: id {r['id']!r} is not a non-negative integer")
            pairs.append((str(r["name"]).strip(), int(r["id"])))
    else:
        while lines and not lines[-1]:
            lines.pop()
        if any(not name for name in lines):
            raise UserError(f"{path} line {lines.index('') + 1}: empty species name")
        pairs = [(name, i) for i, name in enumerate(lines)]
    names = [n for n, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if not pairs or repeated:
        raise UserError(f"{path}: " + (f"species listed twice: {', '.join(repeated)}" if repeated else "no species"))
    return dict(pairs)


def _files(folder: str) -> list[str]:
    if not fs.isdir(folder):
        raise UserError(f"{folder} is not a directory")
    found = sorted(p for p in (fs.glob(folder.rstrip("/") + "/**") if fs.is_remote(folder) else
                               [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files])
                   if p.lower().endswith(".txt"))
    if not found:
        raise UserError(f"{folder} holds no .txt selection table")
    return found


def raven_rows(folder: str, kind: str, cfg: ImportConfig) -> list[SourceRow]:
    rows = []
    for path in _files(folder):
        try:
            table = raven.parse_table(fs.read_text(path), where=path, species_column=cfg.species_column or None)
        except raven.RavenError as e:
            raise UserError(str(e)) from e
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not UTF-8 text: {e}") from e
        if table.species_column is None:
            raise UserError(f"{path}: no species column (tried {', '.join(raven.SPECIES_COLUMNS)}); name it with "
                            f"--species_column (columns: {', '.join(table.columns)})")
        own_id = raven.recording_id_of(fs.basename(path))
        for r in table.rows:
            begin_file = table.value(r, raven.BEGIN_FILE) if raven.BEGIN_FILE in table.columns else ""
            rows.append(SourceRow(kind, path, r.line, {
                "recording_id": os.path.splitext(fs.basename(begin_file))[0] if begin_file else own_id,
                "species": table.value(r, table.species_column),
                "songtype_id": table.value(r, "Songtype") if "Songtype" in table.columns else str(cfg.songtype_id),
                "t_min": table.value(r, raven.BEGIN), "f_min": table.value(r, raven.LOW),
                "t_max": table.value(r, raven.END), "f_max": table.value(r, raven.HIGH)}))
    return rows


BOX_COLUMNS = ("recording_id", "t_min", "t_max", "f_min", "f_max")


def csv_rows(path: str, cfg: ImportConfig) -> list[SourceRow]:
    table, _ = labels.read_text_csv(path, "--boxes_csv")
    columns = [str(c).strip() for c in table.columns]
    table.columns = columns
    missing = [c for c in BOX_COLUMNS if c not in columns]
    if "species" not in columns and "species_id" not in columns:
        missing.append("species (or species_id)")
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; expected {', '.join(BOX_COLUMNS)}, species "
                        f"or species_id, and optionally songtype_id, kind")
    rows = []
    for i, r in enumerate(table.to_dict("records")):
        kind = str(r.get("kind", "tp")).strip().lower() or "tp"
        raw = {c: str(r[c]) for c in BOX_COLUMNS}
        raw["songtype_id"] = str(r.get("songtype_id", cfg.songtype_id))
        raw["species"] = str(r["species"]) if "species" in columns else ""
        raw["species_id"] = str(r["species_id"]) if "species_id" in columns else ""
        rows.append(SourceRow(kind, path, i + 2, raw))
    return rows


MISSING_SPECIES, BAD_KIND = "missing_species", "bad_kind"


def _rfcx(row: SourceRow, species: dict[str, int]) -> tuple[dict | None, str, str]:
    """(the RFCX-column dict of a source row, "", "") or (None, reason, detail) for a species or kind it lacks."""
    raw = dict(row.raw)
    name = raw.pop("species", "").strip()
    if name:
        if name not in species:
            return None, UNKNOWN_SPECIES, f"species {name!r} is not in the species list"
        raw["species_id"] = str(species[name])
    elif not raw.get("species_id", "").strip():
        return None, MISSING_SPECIES, "the species is empty"
    if row.kind not in ("tp", "fp"):
        return None, BAD_KIND, f"kind={row.kind!r}: expected tp or fp"
    return {c: raw.get(c, "") for c in labels.REQUIRED_COLUMNS}, "", ""


def convert(rows: Sequence[SourceRow], species: dict[str, int]) -> tuple[list[tuple[SourceRow, labels.Box]], list[dict]]:
    """(valid rows with their boxes, bad rows as {file, line, reason, detail, row}): every row is one or the other."""
    bad, checked = [], []
    for row in rows:
        raw, reason, detail = _rfcx(row, species)
        if raw is None:
            bad.append({"file": row.where, "line": row.line, "reason": reason, "detail": detail, "row": row.raw})
        else:
            checked.append((row, labels.CsvRow(row.kind, len(checked), raw)))
    num_classes = max(species.values()) + 1
    valid, rejections = labels.validate_rows([c for _, c in checked], num_classes)
    source = {c.row_index: s for s, c in checked}
    bad += [{"file": source[r.row_index].where, "line": source[r.row_index].line, "reason": r.reason,
             "detail": r.detail, "row": source[r.row_index].raw} for r in rejections]
    return [(source[c.row_index], box) for c, box in valid], sorted(bad, key=lambda b: (b["file"], b["line"]))


def _table(boxes: Sequence[tuple[SourceRow, labels.Box]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(labels.REQUIRED_COLUMNS)
    for row, b in boxes:
        w.writerow([labels.recording_key(row.raw), b.species_id, b.songtype_id, f"{b.t_min:g}", f"{b.f_min:g}", f"{b.t_max:g}",
                    f"{b.f_max:g}"])
    return out.getvalue()


def run(argv: Sequence[str] | None = None) -> dict:
    p = checks.ArgumentParser(prog="python -m pipeline.import_annotations", allow_abbrev=False,
                              description="Raven selection tables or a CSV of boxes -> train_tp.csv / train_fp.csv")
    settings.add_flags(p, ImportConfig, "import settings")
    overrides = settings.flag_overrides(p.parse_args(argv), ImportConfig)
    cfg = settings.apply_overrides(ImportConfig(species=overrides.pop("species"), out_dir=overrides.pop("out_dir")),
                                   overrides, flags=True)
    if bool(cfg.boxes_csv) == bool(cfg.raven_dir or cfg.fp_raven_dir):
        raise UserError("give either --raven_dir (and/or --fp_raven_dir) or --boxes_csv")
    targets = [fs.join(cfg.out_dir, n) for n in (labels.TP_CSV, labels.FP_CSV)]
    existing = [t for t in targets if fs.exists(t)]
    if existing and not cfg.overwrite:
        raise UserError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    species = read_species_list(cfg.species)
    if cfg.boxes_csv:
        rows = csv_rows(cfg.boxes_csv, cfg)
    else:
        rows = ((raven_rows(cfg.raven_dir, "tp", cfg) if cfg.raven_dir else [])
                + (raven_rows(cfg.fp_raven_dir, "fp", cfg) if cfg.fp_raven_dir else []))
    valid, bad = convert(rows, species)
    if bad and not cfg.skip_bad_rows:
        shown = "; ".join(f"{b['file']} line {b['line']}: {b['reason']}: {b['detail']}" for b in bad[:SHOWN])
        raise UserError(f"{len(bad)} bad annotation row(s), nothing written: {shown}"
                        f"{' ...' if len(bad) > SHOWN else ''} (fix them, or pass --skip_bad_rows)")
    if not any(row.kind == "tp" for row, _ in valid):
        raise UserError("no valid true-positive annotation found; the shards job needs at least one")
    fs.makedirs(cfg.out_dir)
    for kind, target in zip(("tp", "fp"), targets):
        fs.write_text(target, _table([(r, b) for r, b in valid if r.kind == kind]))
    fs.write_text(fs.join(cfg.out_dir, REJECTED_FILE), "".join(json.dumps(b, sort_keys=True) + "\n" for b in bad))
    settings.save(cfg, fs.join(cfg.out_dir, "import_config.json"))
    counts = {"tp": sum(r.kind == "tp" for r, _ in valid), "fp": sum(r.kind == "fp" for r, _ in valid),
              "bad": len(bad), "read": len(rows)}
    print(f"{counts['read']} annotation rows: {counts['tp']} tp, {counts['fp']} fp written to {targets[0]} and "
          f"{targets[1]}" + (f"; WARNING: {counts['bad']} bad row(s) skipped, listed in "
                             f"{fs.join(cfg.out_dir, REJECTED_FILE)}" if bad else ""))
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)


if __name__ == "__main__":
    run_main(main)
