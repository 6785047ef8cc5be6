"""Fixtures of the data-stage tests."""
from __future__ import annotations

import pytest

from tests.helpers import shard_factory as sf
from tests.helpers.recipe_config import RATE


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> str:
    """Three folds of tp, fp and background slices (tests.helpers.shard_factory.three_kind_folds), 2 s slices,
    two files per fold and kind."""
    return sf.write_shards(str(tmp_path_factory.mktemp("shards")), sf.three_kind_folds(), sample_rate=RATE,
                           slice_seconds=2.0, files_per_fold=2)
