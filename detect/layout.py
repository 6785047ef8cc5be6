"""The detection job's output dir: the one place that names its files, and the per-recording part files.

    OUT/config.json              resolved DetectConfig (a re-run with other output settings is refused)
    OUT/model_metadata.json      the export's metadata (core.export_layout) the run used
    OUT/species.csv              name,id of each score column (the importer reads it as a species list)
    OUT/windows/<id>.parquet     one per recording: recording_id, window, start_s, end_s, scores[C]
                                 (+ embeddings[D] with --embeddings): its unit of completion
    OUT/raven/<id>.txt           Raven selection table of its detections (core.raven)
    OUT/rejected/rejected-*.jsonl  this run's dead letters: {recording_id, path, reason, detail}
    OUT/detections.csv           recording_id,start_s,end_s,species_id,score (assembled from the parts)
    OUT/submission.csv           with --test_layout: recording_id,s0..s{C-1}
    OUT/summary.json             counts of the run, written last

A part is written to a temp name and renamed (atomic on a local disk; a GCS object appears whole), and
only after the recording's Raven table: a recording whose part exists is complete, and a re-run skips
it. Temp files of a killed run are removed when the next run starts (it holds the dir's lock).

    write_atomically(path, data); complete_ids(out); remove_temp_files(out)
    data = part_bytes(window_scores); ws = read_part(path)
"""
from __future__ import annotations

import os
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import fs
from detect.tables import WindowScores

CONFIG, METADATA, SPECIES = "config.json", "model_metadata.json", "species.csv"
WINDOWS, RAVEN, REJECTED = "windows", "raven", "rejected"
DETECTIONS, SUBMISSION, SUMMARY = "detections.csv", "submission.csv", "summary.json"
LOCK = ".detect.lock"
PART_SUFFIX, RAVEN_SUFFIX = ".parquet", ".txt"
TMP_MARK = ".tmp-"
# Names only this job writes: a dir holding config.json and one of these is a detection output.
MARKERS = (WINDOWS, METADATA, SPECIES)


def part_path(out: str, recording_id: str) -> str:
    return fs.join(out, WINDOWS, recording_id + PART_SUFFIX)


def raven_path(out: str, recording_id: str) -> str:
    return fs.join(out, RAVEN, recording_id + RAVEN_SUFFIX)


def write_atomically(path: str, data: bytes) -> None:
    """`data` at `path` whole, or nothing there: a unique temp name in the same dir (remove_temp_files finds
    a killed run's), then a rename."""
    fs.makedirs(fs.dirname(path))
    fs.write_atomically(path, data, f"{path}{TMP_MARK}{uuid.uuid4().hex}")


def _files_under(directory: str) -> list[str]:
    if fs.is_remote(directory):
        try:
            return fs.glob(directory.rstrip("/") + "/**")
        except FileNotFoundError:
            return []
    found = []
    for d, _, files in os.walk(directory):
        found += [os.path.join(d, f) for f in files]
    return found


def complete_ids(out: str) -> set[str]:
    """Ids of the recordings whose part file exists (one listing of OUT/windows, not a lookup per id)."""
    root = fs.join(out, WINDOWS).rstrip("/") + "/"
    return {p[len(root):-len(PART_SUFFIX)].replace(os.sep, "/") for p in _files_under(root)
            if p.startswith(root) and p.endswith(PART_SUFFIX)}


def remove_temp_files(out: str) -> list[str]:
    """Temp files a killed run left in OUT/windows and OUT/raven; returns their paths."""
    doomed = [p for sub in (WINDOWS, RAVEN) for p in _files_under(fs.join(out, sub)) if TMP_MARK in fs.basename(p)]
    fs.remove_all(doomed)
    return doomed


def part_bytes(ws: WindowScores) -> bytes:
    """One recording's windows as a Parquet file (rows: windows; scores and embeddings as float32 lists)."""
    columns = {
        "recording_id": pa.array([ws.recording_id] * len(ws.start_s), pa.string()),
        "window": pa.array(np.arange(len(ws.start_s), dtype=np.int32)),
        "start_s": pa.array(np.asarray(ws.start_s, np.float64)),
        "end_s": pa.array(np.asarray(ws.end_s, np.float64)),
        "scores": pa.array(list(np.asarray(ws.scores, np.float32)), pa.list_(pa.float32())),
    }
    if ws.embeddings is not None:
        columns["embeddings"] = pa.array(list(np.asarray(ws.embeddings, np.float32)), pa.list_(pa.float32()))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def read_part(path: str) -> WindowScores:
    """A part file back as WindowScores (scores float32 [W, C], embeddings [W, D] or None)."""
    table = pq.read_table(pa.BufferReader(fs.read_bytes(path)))
    ids = table.column("recording_id").to_pylist()
    emb = (np.array(table.column("embeddings").to_pylist(), np.float32) if "embeddings" in table.column_names
           else None)
    return WindowScores(ids[0] if ids else "", table.column("start_s").to_numpy(), table.column("end_s").to_numpy(),
                        np.array(table.column("scores").to_pylist(), np.float32), emb)
