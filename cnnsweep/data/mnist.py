"""MNIST in the original IDX files (train-/t10k-images-idx3-ubyte, -labels-idx1-ubyte, gzipped or not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset, ImageSplit
from .errors import DataError
from .registry import register_dataset, require_root

_HINT = "expected MNIST IDX files such as t10k-images-idx3-ubyte.gz; set data.root to their folder"
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803: uint8, 3 dims; 0x00000801: uint8, 1 dim


@register_dataset("mnist")
def load_mnist(root: Path | None) -> ImageDataset:
    root = require_root("mnist", root, _HINT)
    found = {p: _load_pair(root, p) for p in ("train", "t10k")}
    notes = []
    if found["train"] is None and found["t10k"] is None:
        raise DataError(f"no MNIST files in {root}: {_HINT}")
    if found["train"] is None:
        # The shared data keeps only the test half; it still exercises the reader and small runs.
        notes.append(f"no train-images-idx3-ubyte in {root}: using the t10k files as the training split "
                     "(no test split)")
        train, test = found["t10k"], None
    else:
        train, test = found["train"], found["t10k"]
        if test is None:
            notes.append(f"no t10k-images-idx3-ubyte in {root}: test metrics skipped")
    return ImageDataset(train, None, test, [str(d) for d in range(10)], notes)


def _load_pair(root: Path, prefix: str) -> ImageSplit | None:
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = f"{prefix}-images-idx3-ubyte" if images_path is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{root}: found one {prefix} IDX file but not {missing}(.gz)")
    images, labels = read_idx(images_path, _IMAGES_MAGIC), read_idx(labels_path, _LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path.name} "
                        f"has {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return ImageSplit(_to_tensor(images[:, None]), _to_tensor(labels.astype(np.int64)))


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (big-endian header: magic, then one uint32 per dimension, then uint8 data)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({err})") from None
    ndim = magic & 0xFF
    if len(raw) < 4 + 4 * ndim or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: not an IDX file of uint8 with {ndim} dims "
                        f"(magic {found!r}, expected {magic})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} = {int(np.prod(shape))} values, file has {data.size}")
    return data.reshape(shape).copy()  # a writable array (frombuffer of bytes is read-only)
