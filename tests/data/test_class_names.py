"""Class names from any source: at most MAX_NUM_CLASSES, each a short string, printable."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.data import DataError, ImageDataset, ImageSplit, create_dataset
from cnnsweep.data import dataset as dataset_module
from cnnsweep.data.dataset import MAX_CLASS_NAME_LENGTH, MAX_NUM_CLASSES


def _split(n: int = 2) -> ImageSplit:
    return ImageSplit(torch.zeros((n, 1, 4, 4), dtype=torch.uint8), torch.zeros(n, dtype=torch.int64))


def test_too_many_class_names_is_a_clear_error():
    with pytest.raises(DataError, match=f"at most {MAX_NUM_CLASSES}"):
        ImageDataset(_split(), None, None, [str(i) for i in range(MAX_NUM_CLASSES + 1)])


def test_a_too_long_or_non_text_class_name_is_a_clear_error():
    with pytest.raises(DataError, match=f"class 1 .*longer than {MAX_CLASS_NAME_LENGTH}"):
        ImageDataset(_split(), None, None, ["a", "x" * (MAX_CLASS_NAME_LENGTH + 1)])
    with pytest.raises(DataError, match="class 0 .*not text"):
        ImageDataset(_split(), None, None, [None, "b"])


def test_undecodable_class_names_become_printable():
    ds = ImageDataset(_split(), None, None, [b"caf\xe9".decode("utf-8", "surrogateescape")])
    assert ds.class_names == ["caf\\xe9"]


def _gtsrb(root: Path, names_csv: bytes) -> Path:
    data = {"features": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.array([0, 1])}
    (root / "train.pickle").write_bytes(pickle.dumps(data))
    (root / "label_names.csv").write_bytes(names_csv)
    return root


@pytest.mark.parametrize("content, match", [
    (b"ClassId,SignName\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(MAX_NUM_CLASSES + 1)),
     f"more than {MAX_NUM_CLASSES}"),
    (b"ClassId,SignName\n0,a\n1," + b"x" * 200_000 + b"\n", "cannot read"),
    (b"ClassId,SignName\n0,caf\xe9\n1,b\n", "not UTF-8"),
    (b"ClassId,SignName\n0,a\n1\n", "no SignName"),
])
def test_bad_label_names_csv_is_a_clear_error(tmp_path, content, match):
    with pytest.raises(DataError, match=match):
        create_dataset("gtsrb_pickle", _gtsrb(tmp_path, content))


def test_image_folder_with_too_many_classes_fails_before_decoding(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "x.png")
    monkeypatch.setattr(dataset_module, "MAX_NUM_CLASSES", 2)
    with pytest.raises(DataError, match="3 classes, at most 2"):
        create_dataset("image_folder", tmp_path, cache_dir=str(tmp_path / ".cache"))
