"""Checkpoints: atomic writes, safe loads, model rebuild."""

from __future__ import annotations

import os

import pytest
import torch

from cnnsweep.checkpoint import (CHECKPOINT_FILE, FORMAT_VERSION, CheckpointError, find_checkpoint_file,
                                 load_checkpoint, save_checkpoint)


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
    assert torch.equal(loaded.model["w"], torch.ones(2)) and loaded.version == FORMAT_VERSION
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
    assert load_checkpoint(d).model["v"].item() == 1
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
    assert load_checkpoint(d).config["name"] == "new"
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

    torch.save(state, tmp_path / CHECKPOINT_FILE)  # crafted: save_checkpoint would refuse some of these
    with pytest.raises(CheckpointError, match=words) as err:
        load_model_from_checkpoint(tmp_path)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- the CheckpointState schema


def test_a_state_round_trips_through_the_schema(tmp_path):
    from cnnsweep.checkpoint import CheckpointState, load_model_from_checkpoint

    state = CheckpointState.model_validate(_tiny_state(epoch=4, metrics={"val/acc": 0.5}, history=[{"epoch": 4}]))
    save_checkpoint(state, tmp_path)
    raw = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert raw["version"] == FORMAT_VERSION and "format" not in raw and "optimizer" not in raw  # unset: left out
    loaded = load_checkpoint(tmp_path)
    assert loaded.model_dump(exclude={"model"}) == state.model_dump(exclude={"model"})
    assert loaded.model_args.num_classes == 3 and loaded.epoch == 4 and loaded.history == [{"epoch": 4}]
    # the state dict is the object torch.load made, module versions (`_metadata`) included
    assert loaded.model._metadata == state.model._metadata
    assert load_model_from_checkpoint(tmp_path).metrics == {"val/acc": 0.5}


@pytest.mark.parametrize("marker", [{"format": "cnnsweep/1"}, {}])
def test_an_unversioned_checkpoint_of_the_previous_code_still_loads(tmp_path, marker):
    from cnnsweep.checkpoint import load_model_from_checkpoint

    torch.save(_tiny_state(**marker), tmp_path / CHECKPOINT_FILE)  # what fit wrote before `version`
    assert load_checkpoint(tmp_path).version == FORMAT_VERSION
    assert load_model_from_checkpoint(tmp_path).class_names == ["a", "b", "c"]


@pytest.mark.parametrize("changes, words", [
    ({"version": FORMAT_VERSION + 1}, f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"),
    ({"version": str(FORMAT_VERSION)}, "format version '2'"),
    ({"version": True}, "format version True,"),
    ({"format": "cnnsweep/9"}, "unknown checkpoint format 'cnnsweep/9'"),
    ({"format": "cnnsweep/1", "version": FORMAT_VERSION}, "format: unknown key"),
    ({"notes": "hi"}, "not a cnnsweep checkpoint \\(notes: unknown key\\)"),
    ({"model_args": {"num_classes": 3, "in_channels": 1, "image_size": 8, "depth": 9}}, "model_args.depth: unknown"),
    ({"epoch": True}, "epoch: Input should be a valid integer"),
    ({"epoch": -1}, "epoch: must be greater than or equal to 0"),
    ({"model": [1, 2]}, "model: .*must be a mapping, got list"),
    ({"class_names": ["a", 1.5, "c"]}, "class_names.1"),
])
def test_another_version_or_shape_is_one_line_naming_the_file(tmp_path, changes, words):
    torch.save(_tiny_state(**changes), tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=words) as err:
        load_checkpoint(tmp_path)
    assert str(err.value).startswith(str(tmp_path / CHECKPOINT_FILE)) and "\n" not in str(err.value)


def test_a_file_full_of_unknown_keys_gives_a_bounded_message(tmp_path):
    torch.save(_tiny_state(**{f"k{i}\nx": i for i in range(1000)}), tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=r"k0; x: unknown key.*\.\.\. \(1000 problems\)") as err:
        load_checkpoint(tmp_path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 500


def test_saving_goes_through_the_schema_too(tmp_path):
    with pytest.raises(CheckpointError, match="notes: unknown key"):
        save_checkpoint(_tiny_state(notes="hi"), tmp_path / "ck")
    assert not (tmp_path / "ck").exists()  # nothing written
