"""What the shards job's driver learns from the data dir before launching (pipeline.shards.load_inputs),
read by the job's steps and by the manifest it writes (pipeline.manifest_writer)."""
from __future__ import annotations

import dataclasses

from pipeline import examples, labels, listing


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """Everything the driver learns from DATA before launching."""

    tasks: tuple[examples.RecordingTask, ...]
    fold_of: dict[str, int]
    tp: labels.CsvTable
    fp: labels.CsvTable | None
    test_files: int
    unlabelled_train_files: int
    training_recordings: int  # distinct (safe, labels.is_safe_id) recording ids with a tp or fp row
    background_slices: int  # background_per_recording x training_recordings
    split: listing.SplitReport = listing.SplitReport((), (), ())
    ignored_files: tuple[str, ...] = ()  # same stem in another letter case (listing.FlacFiles.ignored)
