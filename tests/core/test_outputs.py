"""core.outputs: what marks a shards dir or a run dir, from one source of names (issue 16, round 2)."""
from __future__ import annotations

import dataclasses

from tests.helpers.round2 import (
    SHARDS_CFG,
)
from trainer.training import run_layout as layout


def test_the_names_that_mark_a_run_dir_have_one_source():
    """core.outputs (which the Beam job imports) owns the names that mark a run dir; the trainer's run
    layout and run guard take them from there, and the shards config keys it looks for are ShardsConfig's."""
    from core import outputs
    from trainer.training import run_guard

    assert (layout.SUMMARY, layout.BEST_MODEL, layout.HISTORY, layout.BACKUP) == outputs.RUN_DIR_NAMES
    assert {*outputs.RUN_DIR_NAMES, layout.CHECKPOINTS, layout.SERVING_MODEL} <= outputs.OTHER_COMMANDS_NAMES
    assert run_guard.IDENTITY_FILE == outputs.RUN_IDENTITY
    assert outputs.SHARDS_CONFIG_KEYS <= set(dataclasses.asdict(SHARDS_CFG))


def test_common_names_alone_mark_no_run_or_shards_dir(tmp_path):
    """A home dir with a backup/ dir, a manifest.json or a history.csv of its own is no run or shards dir."""
    from core import outputs

    for name in ("backup", "checkpoints"):
        (tmp_path / name).mkdir()
    for name in ("manifest.json", "history.csv", "folds.csv"):
        (tmp_path / name).write_text("{}" if name.endswith(".json") else "a,b\n")
    outputs.refuse_inside("--output", str(tmp_path / "sub" / "submission.csv"), is_dir=False)
    outputs.refuse_inside("--run_dir", str(tmp_path / "run"), own=outputs.RUN)
