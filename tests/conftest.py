"""Shared fixtures: real data location, and ONE Ray instance for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNSWEEP_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (GTSRB pickles, AHE folders, MNIST IDX); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CNNSWEEP_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gtsrb_root(shared_data: Path) -> Path:
    root = shared_data / "gtsrb"
    if not (root / "train.pickle").is_file():
        pytest.skip(f"GTSRB pickles not found in {root}")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every Ray test (starting one costs ~10 s on 2 cores)."""
    ray = pytest.importorskip("ray")
    from cnnsweep.ray_cluster import start_ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    start_ray(num_cpus=4)  # logical CPUs: 2 Train workers + drivers/controllers fit on a 2-core box
    yield ray
    ray.shutdown()
