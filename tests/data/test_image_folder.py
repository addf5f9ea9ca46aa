"""Image folders: layout, resize to one tensor, gray handling, and the decoded .npz cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.data import DataError, create_dataset
from cnnsweep.data import image_folder as image_folder_module

AHE_CLASSES = ["altar", "apse", "bell_tower", "column", "dome(inner)", "dome(outer)", "flying_buttress",
               "gargoyle", "stained_glass", "vault"]


def _save(path: Path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def _small_folder(root: Path) -> None:
    _save(root / "cat" / "a.png", (24, 24), (200, 10, 10))
    _save(root / "cat" / "b.JPG", (24, 24), (200, 10, 10))
    _save(root / "cat" / "gray.png", (24, 24), 128, mode="L")  # converted to RGB
    _save(root / "dog" / "c.ppm", (40, 30), (10, 10, 200))  # resized to the common 24 x 24
    _save(root / "dog" / "d.bmp", (24, 24), (10, 10, 200))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()


def test_folder_decodes_to_one_uint8_tensor(tmp_path):
    _small_folder(tmp_path / "data")
    ds = create_dataset("image_folder", tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    assert ds.class_names == ["cat", "dog"] and ds.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.train.images.shape == (5, 3, 24, 24) and ds.train.images.dtype == torch.uint8
    assert ds.train.images[2].unique().tolist() == [128]  # the gray image, replicated to 3 channels
    assert ds.train.images[3].float().mean(dim=(1, 2)).tolist() == pytest.approx([10, 10, 200], abs=1)
    assert any("empty" in n for n in ds.notes) and any("no test/" in n for n in ds.notes)
    assert ds.valid is None and ds.test is None


def test_image_size_option_and_gray_dataset_keeps_one_channel(tmp_path):
    for i in range(3):
        _save(tmp_path / "d" / f"c{i % 2}" / f"{i}.png", (20, 20), 40 * i, mode="L")
    ds = create_dataset("image_folder", tmp_path / "d", image_size=8, cache_dir=str(tmp_path / "cache"))
    assert ds.train.images.shape == (3, 1, 8, 8)


def test_train_valid_test_subfolders(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(n):
            _save(tmp_path / split / ("b" if i % 2 else "a") / f"{i}.png", (16, 16), (i, i, i + 1))
    ds = create_dataset("image_folder", tmp_path, cache_dir=str(tmp_path / "cache"))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (4, 2, 2) and ds.class_names == ["a", "b"]
    assert ds.test.labels.tolist() == [0, 1]


def test_unknown_class_in_valid_and_empty_root_are_errors(tmp_path):
    _save(tmp_path / "train" / "a" / "0.png", (8, 8), (1, 2, 3))
    _save(tmp_path / "valid" / "zebra" / "0.png", (8, 8), (1, 2, 3))
    with pytest.raises(DataError, match="'zebra' is not among the train classes"):
        create_dataset("image_folder", tmp_path, cache_dir=str(tmp_path / "cache"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no images in"):
        create_dataset("image_folder", tmp_path / "nothing")
    with pytest.raises(DataError, match="not a folder"):
        create_dataset("image_folder", tmp_path / "missing")


def test_corrupt_image_is_named(tmp_path):
    _save(tmp_path / "a" / "ok.png", (8, 8), (1, 2, 3))
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        create_dataset("image_folder", tmp_path, image_size=8, cache_dir=str(tmp_path / "cache"))


def test_second_load_comes_from_cache_and_changes_invalidate_it(tmp_path, monkeypatch):
    _small_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    first = create_dataset("image_folder", tmp_path / "data", cache_dir=str(cache))
    assert len(list(cache.glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_folder_module, "_decode_layout", no_decoding)
    second = create_dataset("image_folder", tmp_path / "data", cache_dir=str(cache))
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.train.labels, second.train.labels)

    _save(tmp_path / "data" / "dog" / "new.png", (24, 24), (1, 1, 1))  # a new file: a new key
    with pytest.raises(AssertionError, match="decoded again"):
        create_dataset("image_folder", tmp_path / "data", cache_dir=str(cache))


def test_unwritable_cache_dir_falls_back_to_user_cache(tmp_path, monkeypatch):
    _small_folder(tmp_path / "data")
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # mkdir below a file fails, even as root (chmod would not stop root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ds = create_dataset("image_folder", tmp_path / "data", cache_dir=str(blocker / "cache"))
    assert len(ds.train) == 5
    assert len(list((tmp_path / "xdg" / "cnnsweep").glob("image_folder-*.npz"))) == 1


def test_read_only_data_folder_is_left_alone(tmp_path, monkeypatch):
    """A data folder shipped read-only (like ../shared/data) gets no .cnnsweep_cache, even for root."""
    _small_folder(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "data").chmod(0o555)
    try:
        create_dataset("image_folder", tmp_path / "data")  # cache_dir None: <root>/.cnnsweep_cache first
    finally:
        (tmp_path / "data").chmod(0o755)
    assert not (tmp_path / "data" / ".cnnsweep_cache").exists()
    assert len(list((tmp_path / "xdg" / "cnnsweep").glob("*.npz"))) == 1


def test_cache_file_holds_plain_arrays_only(tmp_path):
    _small_folder(tmp_path / "data")
    create_dataset("image_folder", tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    (path,) = tmp_path.joinpath("cache").glob("*.npz")
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["mac", "train_images", "train_labels"]  # mac: see tests/data/test_cache.py
        assert z["train_images"].dtype == np.uint8


# ---------------------------------------------------------------------------- real AHE


@pytest.fixture(scope="module")
def ahe_train(shared_data) -> Path:
    root = shared_data / "ahe64" / "train"
    if not root.is_dir():
        pytest.skip(f"AHE images not found in {root}")
    return root


def test_ahe_two_classes(ahe_train, tmp_path):
    """Two real classes, copied (links out of the data root are refused); the full load is the slow test below."""
    for name in ("apse", "gargoyle"):
        shutil.copytree(ahe_train / name, tmp_path / name)
    ds = create_dataset("image_folder", tmp_path, cache_dir=str(tmp_path / ".cache"))
    counts = [len(list((ahe_train / n).glob("*.jpg"))) for n in ("apse", "gargoyle")]
    assert ds.class_names == ["apse", "gargoyle"] and ds.train.labels.bincount().tolist() == counts
    assert ds.train.images.shape[1:] == (3, 64, 64)
    assert 40 < ds.train.images.float().mean() < 220  # real photos, not blank


@pytest.mark.slow
def test_ahe_full_load_and_cache(ahe_train, tmp_path, monkeypatch):
    """The whole AHE train split, then the same again from the cache alone (no image decoded: how much
    faster that is belongs in a benchmark, not in a timed test on a shared machine)."""
    import cnnsweep.data.image_folder as image_folder

    first = create_dataset("image_folder", ahe_train, cache_dir=str(tmp_path))
    assert first.train.images.shape == (10130, 3, 64, 64) and first.class_names == AHE_CLASSES
    assert any("3 file name(s) appear under more than one class" in n for n in first.notes)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: the cache was not used")

    monkeypatch.setattr(image_folder, "decode_parallel", no_decoding)
    second = create_dataset("image_folder", ahe_train, cache_dir=str(tmp_path))
    assert torch.equal(first.train.images, second.train.images)
