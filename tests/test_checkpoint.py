"""Checkpoints: atomic writes, safe loads, model rebuild."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from cnnsweep.checkpoint import (CHECKPOINT_FILE, CheckpointError, find_checkpoint_file, load_checkpoint,
                                 save_checkpoint)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_and_side_files(tmp_path):
    state = {"config": {"train": {"lr": 0.1}}, "model": {"w": torch.ones(2)}, "metrics": {"val/acc": 0.5}}
    d = save_checkpoint(state, tmp_path / "ck")
    assert (d / "config.yaml").read_text().startswith("train:")
    assert "val/acc" in (d / "metrics.json").read_text()
    loaded = load_checkpoint(d)
    assert torch.equal(loaded["model"]["w"], torch.ones(2))
    assert find_checkpoint_file(tmp_path) == d / CHECKPOINT_FILE  # a run folder is searched


def test_code_carrying_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / CHECKPOINT_FILE
    torch.save({"config": {}, "model": _Evil(marker)}, path)  # torch.save pickles arbitrary objects
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not marker.exists()
    with open(path, "rb") as f:  # sanity: a plain unpickler would have run it
        data = f.read()
    assert b"system" in data


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    d = save_checkpoint({"config": {}, "model": {"v": torch.tensor(1)}}, tmp_path)

    def boom(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"config": {}, "model": {"v": torch.tensor(2)}}, tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(d)["model"]["v"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "config.yaml"]  # no temp left


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(tmp_path)
    torch.save({"weights": torch.ones(1)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="not a cnnsweep checkpoint"):
        load_checkpoint(tmp_path)
