"""MNIST in the original IDX files (train-/t10k-images-idx3-ubyte, -labels-idx1-ubyte, gzipped or not).

Layouts: train-* and t10k-* are the train and test splits (validation is drawn from train by
load_dataset); t10k-* alone becomes the train split, with no test split (a note says so); train-* alone
has no test split (a note says so).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from .dataset import ImageDataset, ImageSplit
from cnnsweep.errors import DataError
from .registry import register_dataset, require_root

_HINT = "expected MNIST IDX files such as t10k-images-idx3-ubyte.gz; set data.root to their folder"
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803: uint8, 3 dims; 0x00000801: uint8, 1 dim
MAX_IDX_DIM = 1 << 24  # one dimension: 16.7M images, or rows/columns of 16.7M pixels
MAX_IDX_BYTES = 1 << 30  # values (uint8) in one IDX file, bytes: MNIST's 60,000 training images are 47 MB
_READ_STEP = 16 << 20  # bytes inflated per read: gzip's temporary copy stays this small


@register_dataset("mnist")
def load_mnist(root: Path | None) -> ImageDataset:
    root = require_root("mnist", root, _HINT)
    found = {p: _load_pair(root, p) for p in ("train", "t10k")}
    notes = []
    if found["train"] is None and found["t10k"] is None:
        raise DataError(f"no MNIST files in {root}: {_HINT}")
    if found["train"] is None:
        # Only the official test files (a test-set-only download): train on them, and say that there is
        # no independent test split, rather than refusing a folder the reader can use.
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
    """An IDX file (big-endian header: magic, then one uint32 per dimension, then uint8 data), gzipped
    or not. The header is checked before any data is read, and no more than the values it promises
    (plus one byte, to find trailing data) are ever inflated: a gzip bomb stops there."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            shape = _read_header(f, path, magic)
            values = _read_values(f, path, shape)
            if f.read(1):
                raise DataError(f"{path}: header says {shape} = {math.prod(shape):,} values, "
                                "but the file holds more (trailing data)")
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; corrupt deflate is not
        raise DataError(f"{path}: cannot read ({err})") from None
    return values.reshape(shape)


def _read_header(f: BinaryIO, path: Path, magic: int) -> tuple[int, ...]:
    ndim = magic & 0xFF
    head = f.read(4 + 4 * ndim)
    found = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if found != magic:
        kind = "" if found is None else f" (type 0x{(found >> 8) & 0xFF:02x}, ndim {found & 0xFF})"
        raise DataError(f"{path}: not an IDX file of uint8 with {ndim} dims (magic {found!r}{kind}, "
                        f"expected {magic})")
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: the IDX header ends after {len(head)} bytes ({4 + 4 * ndim} expected)")
    shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(shape)  # a Python int: exact, whatever the dims
    if max(shape) > MAX_IDX_DIM or count > MAX_IDX_BYTES:
        raise DataError(f"{path}: header says {shape} = {count:,} values, over the limit of "
                        f"{MAX_IDX_BYTES:,} values ({MAX_IDX_DIM:,} per dimension)")
    return shape


def _read_values(f: BinaryIO, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Exactly the values the (already bounded) header promises, read into one writable array."""
    count = math.prod(shape)
    out = np.empty(count, dtype=np.uint8)
    view, done = memoryview(out), 0
    while done < count:
        n = f.readinto(view[done:done + _READ_STEP])
        if not n:
            raise DataError(f"{path}: header says {shape} = {count:,} values, the file has {done:,}")
        done += n
    return out
