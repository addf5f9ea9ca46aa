"""A checkpoint's class names are checked like a dataset's before the model is built."""

from __future__ import annotations

import pytest

import cnnsweep.checkpoint as ckpt
from cnnsweep.checkpoint import CheckpointError, load_model_from_checkpoint


@pytest.mark.parametrize("names, match", [(["x" * 201], "longer than 200"), ([str(i) for i in range(10_001)],
                                          "10,001 classes|at most 10000"), (["a", "b"], "num_classes 3 does not match")])
def test_bad_class_names_are_checkpoint_errors(monkeypatch, tmp_path, names, match):
    from cnnsweep.transforms import Preprocess

    preprocess = Preprocess(source_size=(8, 8), source_channels=1, resize_to=8).to_dict()
    args = {"num_classes": 3 if len(names) == 2 else len(names), "in_channels": 1, "image_size": 8}
    state = ckpt.CheckpointState(class_names=names, model_args=args, config={}, preprocess=preprocess, model={})
    monkeypatch.setattr(ckpt, "find_checkpoint_file", lambda p: tmp_path / "model.pt")
    monkeypatch.setattr(ckpt, "load_checkpoint", lambda f, map_location=None: state)
    with pytest.raises(CheckpointError, match=match):
        load_model_from_checkpoint(tmp_path)
