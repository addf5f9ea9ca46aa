"""The decoded-dataset cache is an untrusted file: its headers are checked against what the key promises
before anything is allocated, its content against this user's key, and a bad file is rebuilt, never used."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.data import create_dataset
from cnnsweep.data import image_folder as image_folder_module


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    """The user cache (and its key) in tmp_path, never the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "cnnsweep"


def _folder(root: Path) -> Path:
    for name, color in (("cat", (200, 10, 10)), ("dog", (10, 10, 200))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 12), color).save(root / name / f"{i}.png")
    return root


def _load(root: Path):
    return create_dataset("image_folder", root, cache_dir=str(root.parent / "cache"))


def _first_load(tmp_path: Path):
    root = _folder(tmp_path / "data")
    truth = _load(root)
    (path,) = (tmp_path / "cache").glob("image_folder-*.npz")
    return root, truth, path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _must_rebuild(root: Path, truth, caplog, monkeypatch) -> None:
    """The bad cache is ignored with a note, the data decoded again, and the rewritten cache used next."""
    with caplog.at_level(logging.WARNING, logger="cnnsweep.data.cache"):
        again = _load(root)
    assert any("ignoring" in r.getMessage() for r in caplog.records), caplog.text
    assert torch.equal(again.train.images, truth.train.images)
    assert torch.equal(again.train.labels, truth.train.labels)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the rebuilt cache")

    monkeypatch.setattr(image_folder_module, "_decode_layout", no_decoding)
    assert torch.equal(_load(root).train.images, truth.train.images)


def test_a_header_promising_a_huge_array_is_refused_before_allocation(tmp_path, caplog, monkeypatch):
    root, truth, path = _first_load(tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (1 << 40, 12, 12, 3)})  # ~600 TB of pixels
    members = {k: _npy(v) for k, v in _members(path).items()}
    members["train_images"] = header.getvalue() + bytes(64)
    _write_zip(path, members)
    _must_rebuild(root, truth, caplog, monkeypatch)


def test_pixels_swapped_into_a_cache_file_are_not_used(tmp_path, caplog, monkeypatch):
    """Same names, dtypes and shapes (even the old MAC copied): only the pixels differ."""
    root, truth, path = _first_load(tmp_path)
    arrays = _members(path)
    arrays["train_images"] = 255 - arrays["train_images"]
    _write_zip(path, {k: _npy(v) for k, v in arrays.items()})
    _must_rebuild(root, truth, caplog, monkeypatch)


def _float_images(a):
    return {**a, "train_images": a["train_images"].astype(np.float32)}


def _short_labels(a):
    return {**a, "train_labels": a["train_labels"][:-1]}


def _extra_member(a):
    return {**a, "evil": np.zeros(3)}


def _object_labels(a):
    return {**a, "train_labels": np.array([{"x": 1}] * len(a["train_labels"]), dtype=object)}


def _fortran_images(a):
    return {**a, "train_images": np.asfortranarray(a["train_images"])}


@pytest.mark.parametrize("craft", [_float_images, _short_labels, _extra_member, _object_labels, _fortran_images])
def test_arrays_that_differ_from_what_the_key_promises_are_ignored(tmp_path, caplog, monkeypatch, craft):
    root, truth, path = _first_load(tmp_path)
    _write_zip(path, {k: _npy(v) for k, v in craft(_members(path)).items()})
    _must_rebuild(root, truth, caplog, monkeypatch)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _not_a_zip(path: Path) -> None:
    path.write_bytes(b"hello, not a zip")


def _compressed(path: Path) -> None:
    """Deflated members: a few KB on disk could inflate to any size (np.savez writes stored members)."""
    _write_zip(path, {k: _npy(v) for k, v in _members(path).items()}, zipfile.ZIP_DEFLATED)


def _flipped_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the first member's pixels: its CRC no longer matches
    path.write_bytes(bytes(data))


def _trailing_bytes(path: Path) -> None:
    members = {k: _npy(v) for k, v in _members(path).items()}
    members["train_labels"] += b"\0" * 8
    _write_zip(path, members)


@pytest.mark.parametrize("damage", [_truncated, _not_a_zip, _compressed, _flipped_byte, _trailing_bytes])
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, caplog, monkeypatch, damage):
    root, truth, path = _first_load(tmp_path)
    damage(path)
    _must_rebuild(root, truth, caplog, monkeypatch)


def test_a_cache_that_is_not_a_regular_file_is_ignored(tmp_path, caplog, monkeypatch):
    root, truth, path = _first_load(tmp_path)
    path.unlink()
    path.symlink_to("/dev/zero")
    _must_rebuild(root, truth, caplog, monkeypatch)


def test_the_cache_key_is_private_and_a_shared_one_is_not_trusted(tmp_path, user_cache, caplog):
    root, truth, _ = _first_load(tmp_path)
    key = user_cache / "cache.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_size == 32
    key.chmod(0o666)  # anyone could have written it: caches are neither read nor written
    for npz in (tmp_path / "cache").glob("*.npz"):
        npz.unlink()
    with caplog.at_level(logging.WARNING, logger="cnnsweep.data.cache"):
        again = _load(root)
    assert torch.equal(again.train.images, truth.train.images)
    assert "not cached" in caplog.text and not list((tmp_path / "cache").glob("*.npz"))
