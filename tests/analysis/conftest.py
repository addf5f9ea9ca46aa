"""Real tiny models for the analysis tests: CNNs trained for a few seconds on the embedded digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit


def tiny_config(name: str, **model) -> dict:
    return {"name": name, "data": {"name": "digits", "val_fraction": 0.2},
            "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1} | model,
            "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "amp": "off"}}


def train_tiny(out: Path, name: str = "digits-analysis", **model) -> Path:
    """A real training run; returns the checkpoint folder."""
    cfg = validate_config(tiny_config(name, **model))
    hooks = LocalHooks(output=out)
    fit(cfg, load_dataset(cfg.data), hooks)
    return Path(hooks.last_checkpoint)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("digits-run"))
