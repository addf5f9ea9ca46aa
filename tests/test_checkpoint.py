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


def test_a_killed_partial_folder_is_never_picked(tmp_path):
    import os

    import torch

    from cnnsweep.checkpoint import find_checkpoint_file

    root = tmp_path / "checkpoints"
    (root / "epoch_0001").mkdir(parents=True)
    torch.save({"x": 1}, root / "epoch_0001" / "checkpoint.pt")
    partial = root / ".epoch_0002.abc.partial"  # what a kill during save_checkpoint_dir leaves
    partial.mkdir()
    (partial / "checkpoint.pt").write_bytes(b"half")
    os.utime(partial / "checkpoint.pt", (2e9, 2e9))  # newer than the complete one
    assert find_checkpoint_file(root) == root / "epoch_0001" / "checkpoint.pt"


def test_save_checkpoint_dir_replaces_the_whole_folder(tmp_path):
    from cnnsweep.checkpoint import load_checkpoint, save_checkpoint_dir

    d = tmp_path / "best"
    save_checkpoint_dir({"model": {}, "config": {"name": "old"}, "metrics": {"val/acc": 0.1}}, d)
    save_checkpoint_dir({"model": {}, "config": {"name": "new"}}, d)
    assert load_checkpoint(d)["config"]["name"] == "new"
    assert not (d / "metrics.json").exists()  # nothing of the old folder survives
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def _tiny_state(model_args=None, **changes):
    """A real checkpoint state of an untrained 8x8 gray 3-class cnn, with `changes` applied."""
    from cnnsweep.config import config_to_dict, validate_config
    from cnnsweep.models import build_model
    from cnnsweep.transforms import Preprocess

    cfg = validate_config({"model": {"num_stages": 1, "width": 4, "convs_per_stage": 1}})
    pre = Preprocess(source_size=(8, 8), source_channels=1, mean=(0.5,), std=(0.2,))
    state = {"config": config_to_dict(cfg), "model": build_model(cfg.model, 3, 1, 8).state_dict(),
             "preprocess": pre.to_dict(), "class_names": ["a", "b", "c"],
             "model_args": {"num_classes": 3, "in_channels": 1, "image_size": 8, **(model_args or {})}}
    return {**state, **changes}


def test_a_consistent_checkpoint_loads(tmp_path):
    from cnnsweep.checkpoint import load_model_from_checkpoint

    lm = load_model_from_checkpoint(save_checkpoint(_tiny_state(), tmp_path))
    assert lm.class_names == ["a", "b", "c"] and lm.model.num_classes == 3


def _with_config(section, **values):
    state = _tiny_state()
    state["config"][section].update(values)
    return state


@pytest.mark.parametrize("state, words", [
    (_tiny_state({"num_classes": 20_000}), "num_classes"),  # beyond the class cap; and not the 3 names
    (_tiny_state({"num_classes": 4}), "num_classes"),
    (_tiny_state({"in_channels": 3}), "in_channels"),
    (_tiny_state({"image_size": 1_000_000}), "image_size"),
    (_tiny_state({"num_classes": "3"}), "num_classes"),
    (_tiny_state(model_args=None, class_names="abc"), "class_names"),
    (_tiny_state(class_names=[str(i) for i in range(10_001)], model_args={"num_classes": 10_001}), "classes"),
    (_tiny_state(preprocess={**_tiny_state()["preprocess"], "source_size": [1_000_000, 8]}), "image size"),
    (_tiny_state(preprocess={"version": 1}), "preprocess"),
    ({k: v for k, v in _tiny_state().items() if k != "model_args"}, "model_args"),
    (_with_config("model", width=1_000_000), "weights do not match"),  # 9M params: allowed, but not these
    (_with_config("model", width=5000, convs_per_stage=2), "parameters"),  # 225M params: never allocated
    (_with_config("data", image_size=1_000_000), "image_size"),
])
def test_sizes_and_shapes_in_a_checkpoint_are_checked_before_the_model_is_built(tmp_path, state, words):
    from cnnsweep.checkpoint import load_model_from_checkpoint

    with pytest.raises(CheckpointError, match=words) as err:
        load_model_from_checkpoint(save_checkpoint(state, tmp_path))
    assert "\n" not in str(err.value)
