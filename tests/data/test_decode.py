"""The one guarded image decoder (formats, declared size, Pillow's bomb limits, links out of the root,
non-regular files) and the image folder that reads through it."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from image_bytes import EPS, png_header
from PIL import EpsImagePlugin, Image

from cnnsweep.data import DataError, create_dataset
from cnnsweep.data import decode


def _png(size=(8, 8), color=(1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def no_ghostscript(monkeypatch):
    """Fail loudly if anything hands a file to Ghostscript (EPS/PostScript)."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ghostscript was started on an input file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _load(root: Path, tmp_path: Path, **kw):
    return create_dataset("image_folder", root, cache_dir=str(tmp_path / "cache"), **kw)


# ---------------------------------------------------------------------------- open_image


def test_open_image_checks_the_header_before_decoding():
    img = decode.open_image(_png((30, 20)), max_pixels=600, formats=("PNG",))
    assert img.size == (30, 20) and np.asarray(decode.load_image(img)).shape == (20, 30, 3)
    with pytest.raises(decode.ImageTooLarge, match="image is 30x21 = 630 pixels; the limit is 600"):
        decode.open_image(_png((30, 21)), max_pixels=600, formats=("PNG",))
    with pytest.raises(DataError, match=r"not a PNG image \(\d+ bytes, starting b'%!PS-Ado'\)"):
        decode.open_image(EPS, max_pixels=600, formats=("PNG",))
    with pytest.raises(DataError, match="image data is truncated or corrupt"):
        decode.load_image(decode.open_image(_png((30, 20))[:70], max_pixels=600, formats=("PNG",)))


@pytest.mark.parametrize("side", [10_000, 100_000])  # over Pillow's warning, then its hard limit
def test_pillow_bomb_warning_and_error_become_image_too_large(side):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(decode.ImageTooLarge, match="too large to decode") as info:
            decode.open_image(png_header(side, side), max_pixels=10**12, formats=("PNG",))
    assert "\n" not in str(info.value)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_open_file_refuses_links_out_of_the_root_and_non_regular_files(tmp_path):
    root = _folder(tmp_path / "root", {"a/in.png": _png()})
    (tmp_path / "secret.png").write_bytes(_png())
    (root / "a" / "inside.png").symlink_to(root / "a" / "in.png")
    (root / "a" / "out.png").symlink_to(tmp_path / "secret.png")
    with decode.open_file(root / "a" / "inside.png", root) as f:
        assert f.read() == _png()
    with pytest.raises(DataError, match="outside"):
        decode.open_file(root / "a" / "out.png", root)
    os.mkfifo(root / "a" / "fifo.png")  # opening a FIFO for reading would block until a writer comes
    with pytest.raises(DataError, match="not a regular file"):
        decode.open_file(root / "a" / "fifo.png", root)


# ---------------------------------------------------------------------------- image folder


def test_postscript_named_png_is_refused_without_ghostscript(tmp_path, no_ghostscript):
    root = _folder(tmp_path / "d", {"a/ok.png": _png(), "b/ps.png": EPS})
    with pytest.raises(DataError, match=r"ps\.png: not a PNG, JPEG, PPM, BMP image"):
        _load(root, tmp_path, image_size=8)


@pytest.mark.parametrize("header, words", [
    (png_header(100_000, 100_000), "too large to decode"),  # Pillow's own hard stop, at open time
    (png_header(5_000, 5_000), "image is 5000x5000 = 25,000,000 pixels; the limit is 16,777,216"),
], ids=["over_pillow_limit", "over_our_limit"])
def test_declared_size_is_checked_before_decoding_or_choosing_a_size(tmp_path, header, words):
    root = _folder(tmp_path / "d", {"a/ok.png": _png(), "a/big.png": header})
    with pytest.raises(DataError, match=words):
        _load(root, tmp_path)  # no image_size: the common size is read from the headers


def test_a_thin_image_cannot_make_the_common_side_huge(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 1_000)
    root = _folder(tmp_path / "d", {"a/1.png": _png((100, 1)), "a/2.png": _png((100, 1))})
    with pytest.raises(DataError, match="data.image_size"):
        _load(root, tmp_path)


def test_decoded_array_is_bounded_before_it_is_allocated(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", 3 * 8 * 8 * 3 - 1)
    root = _folder(tmp_path / "d", {f"a/{i}.png": _png() for i in range(3)})
    with pytest.raises(DataError, match=r"3 images of 8x8x3 .* data.image_size"):
        _load(root, tmp_path)


@pytest.mark.parametrize("link", ["file", "class_dir"])
def test_links_out_of_the_data_root_are_not_read(tmp_path, link):
    root = _folder(tmp_path / "d", {"a/ok.png": _png(), "a/ok2.png": _png()})
    outside = _folder(tmp_path / "outside", {"secret.png": _png(color=(9, 9, 9))})
    if link == "file":
        (root / "a" / "link.png").symlink_to(outside / "secret.png")
    else:
        (root / "b").symlink_to(outside)
    with pytest.raises(DataError, match=r"\.png: a link to .*secret\.png, outside the data root"):
        _load(root, tmp_path, image_size=8)


def test_links_inside_the_data_root_still_work(tmp_path):
    root = _folder(tmp_path / "d", {"store/x.png": _png(), "store/y.png": _png()})
    (root / "train").mkdir()
    (root / "train" / "a").symlink_to(root / "store")
    ds = _load(root, tmp_path, image_size=8)
    assert ds.class_names == ["a"] and len(ds.train) == 2
