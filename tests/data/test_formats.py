"""Each dataset format: real shared data where it exists, tiny files built in tmp_path otherwise."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.data import DataError, create_dataset, list_datasets


def test_the_shipped_formats_are_registered():
    assert {"digits", "gtsrb", "gtsrb_pickle", "image_folder", "mnist"} <= set(list_datasets())


# ---------------------------------------------------------------------------- gtsrb_pickle


def test_gtsrb_pickle_real(gtsrb_root):
    ds = create_dataset("gtsrb_pickle", gtsrb_root)
    assert ds.train.images.shape == (34889, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert len(ds.valid) == 4320 and ds.test is None
    assert ds.class_names[0] == "Speed limit (20km/h)" and len(ds.class_names) == 43
    assert sorted(ds.train.labels.unique().tolist()) == list(range(43))
    assert any("test.pickle" in n for n in ds.notes)
    # a channels-first copy of the same pixels
    raw = pickle.loads((gtsrb_root / "valid.pickle").read_bytes())["features"]
    np.testing.assert_array_equal(ds.valid.images[7].permute(1, 2, 0).numpy(), raw[7])


def _write_split(path: Path, n: int, num_classes: int, **overrides) -> None:
    rng = np.random.default_rng(0)
    d = {"features": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
         "labels": (np.arange(n) % num_classes).astype(np.uint8)}
    d.update(overrides)
    path.write_bytes(pickle.dumps(d, protocol=4))


def test_gtsrb_pickle_missing_train_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        create_dataset("gtsrb_pickle", tmp_path)
    msg = str(err.value)
    assert "train.pickle" in msg and "traffic-signs-preprocessed" in msg and "data.root" in msg
    with pytest.raises(DataError, match="data.root is not set"):
        create_dataset("gtsrb_pickle", None)


def test_gtsrb_pickle_missing_valid_and_names_are_notes(tmp_path):
    _write_split(tmp_path / "train.pickle", 20, 4)
    ds = create_dataset("gtsrb_pickle", tmp_path)
    assert ds.valid is None and ds.test is None and len(ds.train) == 20
    assert ds.class_names[:2] == ["Speed limit (20km/h)", "Speed limit (30km/h)"]  # GTSRB names as fallback
    assert sum("valid.pickle" in n for n in ds.notes) == 1 and sum("test.pickle" in n for n in ds.notes) == 1


@pytest.mark.parametrize("override, match", [
    ({"features": np.zeros((4, 32, 32, 3), np.float32)}, "uint8"),
    ({"features": np.zeros((4, 32, 32), np.uint8)}, "uint8 N x H x W x C"),
    ({"labels": np.zeros(3, np.uint8)}, "'labels' must be 4 integers"),
    ({"labels": np.array([0, 1, 2, 60], np.int64)}, "label"),
])
def test_gtsrb_pickle_bad_arrays_are_named(tmp_path, override, match):
    _write_split(tmp_path / "train.pickle", 4, 4, **override)
    (tmp_path / "label_names.csv").write_text("ClassId,SignName\n0,a\n1,b\n2,c\n3,d\n")
    with pytest.raises(DataError, match=match):
        create_dataset("gtsrb_pickle", tmp_path)


def test_gtsrb_pickle_not_a_dict(tmp_path):
    (tmp_path / "train.pickle").write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(DataError, match="expected a dict with 'features' and 'labels'"):
        create_dataset("gtsrb_pickle", tmp_path)


# ---------------------------------------------------------------------------- gtsrb (official archive)

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _fake_official_gtsrb(root: Path) -> None:
    """torchvision's layout: gtsrb/GTSRB/Training/<5-digit class>/*.ppm (+ GT csv), and the test images
    in gtsrb/GTSRB/Final_Test/Images with labels in gtsrb/GT-final_test.csv (';'-separated)."""
    base = root / "gtsrb"
    for c, color in enumerate(COLORS):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        for i, size in enumerate([(30, 31), (45, 40), (64, 64)]):  # official images vary in size
            Image.new("RGB", size, color).save(folder / f"00000_{i:05d}.ppm")
        (folder / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;ClassId\n")
    test = base / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate([2, 0, 1, 2]):
        Image.new("RGB", (50, 52), COLORS[c]).save(test / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;50;52;5;5;45;47;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def test_gtsrb_official_layout_decodes_and_resizes(tmp_path):
    _fake_official_gtsrb(tmp_path / "data")
    ds = create_dataset("gtsrb", tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    assert ds.train.images.shape == (9, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.test.labels.tolist() == [2, 0, 1, 2] and ds.valid is None and len(ds.class_names) == 43
    for x, y in zip(ds.train.images, ds.train.labels):  # solid colours survive the resize
        assert x.float().mean(dim=(1, 2)).tolist() == pytest.approx(COLORS[y], abs=1)
    assert len(list((tmp_path / "cache").glob("gtsrb-*.npz"))) == 1
    again = create_dataset("gtsrb", tmp_path / "data", cache_dir=str(tmp_path / "cache"), image_size=16)
    assert again.test.images.shape == (4, 3, 16, 16)


def test_gtsrb_official_absent_without_download_says_how(tmp_path):
    with pytest.raises(DataError) as err:
        create_dataset("gtsrb", tmp_path)  # download defaults to False: no network
    assert "data.download=true" in str(err.value) and "data.root" in str(err.value)


def test_gtsrb_official_missing_test_is_a_note(tmp_path):
    _fake_official_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GT-final_test.csv").unlink()
    for f in (tmp_path / "gtsrb" / "GTSRB" / "Final_Test" / "Images").iterdir():
        f.unlink()
    (tmp_path / "gtsrb" / "GTSRB" / "Final_Test" / "Images").rmdir()
    ds = create_dataset("gtsrb", tmp_path, cache_dir=str(tmp_path / "cache"))
    assert ds.test is None and any("test" in n for n in ds.notes)


# ---------------------------------------------------------------------------- digits


def test_digits_embedded():
    ds = create_dataset("digits")
    assert ds.train.images.shape == (1797, 1, 8, 8) and ds.class_names == [str(d) for d in range(10)]
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    from sklearn.datasets import load_digits

    raw = load_digits().images[5]  # 0..16 scaled to 0..255
    np.testing.assert_allclose(ds.train.images[5, 0].numpy(), raw * 255 / 16, atol=0.5)


# ---------------------------------------------------------------------------- gtsrb (official): untrusted files


def _png_bomb_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixels: a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)) \
        + chunk(b"IEND", b"")


def _train_file(root: Path) -> Path:
    return root / "gtsrb" / "GTSRB" / "Training" / "00001" / "00000_00001.ppm"


def _bomb(root: Path) -> None:
    _train_file(root).write_bytes(_png_bomb_header(20000, 20000))  # 400 Mpx: over Pillow's own bomb limit


def _eps(root: Path) -> None:
    _train_file(root).write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n")


def _link_out(root: Path) -> None:
    outside = root.parent / "outside.ppm"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    _train_file(root).unlink()
    _train_file(root).symlink_to(outside)


def _dangling_link(root: Path) -> None:
    _train_file(root).unlink()
    _train_file(root).symlink_to(root / "nowhere.ppm")


def _test_csv(root: Path, *rows: str) -> None:
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    (root / "gtsrb" / "GT-final_test.csv").write_text("\n".join([header, *rows]) + "\n")


@pytest.mark.parametrize("damage, words", [
    (_bomb, r"Training/00001/00000_00001\.ppm: image is too large"),
    (_eps, r"Training/00001/00000_00001\.ppm: not a PPM, PNG, JPEG image"),
    (_link_out, r"00000_00001\.ppm: a link to .*outside\.ppm, outside the data root"),
    (_dangling_link, r"00000_00001\.ppm: cannot read"),
    (lambda r: (r / "gtsrb" / "GTSRB" / "Training" / "extra").mkdir(), r"Training/extra: not a GTSRB class folder"),
    (lambda r: (r / "gtsrb" / "GTSRB" / "Training" / "00043").mkdir(), r"Training/00043: not a GTSRB class folder"),
    (lambda r: _test_csv(r, "00000.ppm;50;52;5;5;45;47;abc"), r"GT-final_test\.csv line 2: ClassId 'abc'"),
    (lambda r: _test_csv(r, "00000.ppm;50;52;5;5;45;47;2", "00001.ppm;1;1;1;1;1;1;43"),
     r"GT-final_test\.csv line 3: ClassId '43' is not a class id 0\.\.42"),
    (lambda r: _test_csv(r, "../../outside.ppm;50;52;5;5;45;47;2"),
     r"GT-final_test\.csv line 2: Filename '\.\./\.\./outside\.ppm' is not a plain file name"),
    (lambda r: _test_csv(r, "00000.ppm"), r"GT-final_test\.csv line 2: Filename or ClassId missing"),
    (lambda r: (r / "gtsrb" / "GT-final_test.csv").write_text("Name;Class\n00000.ppm;1\n"),
     r"GT-final_test\.csv: no Filename and ClassId columns"),
    (lambda r: (r / "gtsrb" / "GT-final_test.csv").write_bytes(b"Filename;ClassId\n\xff.ppm;1\n"),
     r"GT-final_test\.csv line 2: not UTF-8"),
    (lambda r: _test_csv(r, "00009.ppm;50;52;5;5;45;47;2"), r"Final_Test/Images/00009\.ppm: cannot read"),
])
def test_gtsrb_official_bad_files_are_one_clear_data_error(tmp_path, damage, words):
    _fake_official_gtsrb(tmp_path / "data")
    damage(tmp_path / "data")
    with pytest.raises(DataError, match=words) as err:
        create_dataset("gtsrb", tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(err.value)


def test_gtsrb_official_csv_size_and_row_count_are_bounded(tmp_path, monkeypatch):
    from cnnsweep.data import gtsrb_official

    _fake_official_gtsrb(tmp_path)
    monkeypatch.setattr(gtsrb_official, "MAX_TEST_ROWS", 3)
    with pytest.raises(DataError, match=r"GT-final_test\.csv line 5: more than 3 test images"):
        create_dataset("gtsrb", tmp_path, cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(gtsrb_official, "MAX_CSV_BYTES", 100)
    with pytest.raises(DataError, match=r"GT-final_test\.csv: larger than the 100-byte limit"):
        create_dataset("gtsrb", tmp_path, cache_dir=str(tmp_path / "cache"))


def test_gtsrb_official_labels_are_the_class_folder_ids(tmp_path):
    """A missing class folder does not shift the labels of the ones after it (class names go by id)."""
    _fake_official_gtsrb(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "gtsrb" / "GTSRB" / "Training" / "00001")
    ds = create_dataset("gtsrb", tmp_path, cache_dir=str(tmp_path / "cache"))
    assert ds.train.labels.tolist() == [0, 0, 0, 2, 2, 2]
