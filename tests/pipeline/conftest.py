"""Fixtures of the Beam job's tests."""
from __future__ import annotations

import pytest

from pipeline import demo_data


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> str:
    """Four 3 s training recordings and one test recording of the demo generator (seed 2)."""
    d = str(tmp_path_factory.mktemp("small_dataset"))
    demo_data.write_demo_dataset(d, num_train=4, num_test=1, duration_s=3.0, seed=2)
    return d


def small_job_args(data_dir: str, out: str, *extra: str) -> list[str]:
    """pipeline.shards flags for a quick run over small_dataset: 2 folds, 1 s slices, DirectRunner."""
    return ["--data_dir", data_dir, "--output_dir", out, "--num_folds", "2", "--slice_seconds", "1",
            "--runner", "DirectRunner", *extra]
