"""The recordings of --audio: every .flac/.wav/.ogg file under it (any letter case, any depth), named by id.

    found = list_recordings("field/")      # Listing
    found.tasks       # (Recording(recording_id="site1/rec7", path=".../site1/rec7.flac"), ...) sorted by id
    found.duplicates  # Recording whose id another file already has (rec7.wav beside rec7.flac): dead letters
    found.ignored     # paths of other files (notes.txt, ...): not recordings, only counted

A recording's id is its path below --audio without the extension ("rec7", "site1/rec7"): the name of
its outputs (OUT/windows/<id>.parquet, OUT/raven/<id>.txt) and of its rows in detections.csv.
"""
from __future__ import annotations

import dataclasses
import os

from core import fs

EXTENSIONS = (".flac", ".wav", ".ogg")
DUPLICATE_ID = "duplicate_recording_id"


@dataclasses.dataclass(frozen=True)
class Recording:
    recording_id: str
    path: str


@dataclasses.dataclass(frozen=True)
class Listing:
    tasks: tuple[Recording, ...]
    duplicates: tuple[Recording, ...]
    ignored: tuple[str, ...]

    @property
    def num_listed(self) -> int:
        """Every audio file found: each ends scored, skipped (complete before) or rejected."""
        return len(self.tasks) + len(self.duplicates)


def _all_files(root: str) -> list[str]:
    if fs.is_remote(root):
        return fs.glob(root.rstrip("/") + "/**")
    found = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        found += [os.path.join(directory, f) for f in files]
    return sorted(found)


def recording_id(root: str, path: str) -> str:
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else fs.basename(path)
    return os.path.splitext(relative.replace(os.sep, "/"))[0]


def list_recordings(root: str) -> Listing:
    """Audio files under `root` (see the module doc); the first file of an id in path order wins."""
    tasks: dict[str, Recording] = {}
    duplicates, ignored = [], []
    for path in _all_files(root):
        if os.path.splitext(path)[1].lower() not in EXTENSIONS:
            ignored.append(path)
            continue
        rid = recording_id(root, path)
        if rid in tasks:
            duplicates.append(Recording(rid, path))
        else:
            tasks[rid] = Recording(rid, path)
    return Listing(tuple(tasks[k] for k in sorted(tasks)), tuple(duplicates), tuple(ignored))
