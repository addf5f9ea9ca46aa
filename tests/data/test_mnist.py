"""MNIST IDX files: both layouts of the real files, and headers checked before anything is inflated."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnsweep.data import DataError, create_dataset
from cnnsweep.data.mnist import read_idx

MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # official train labels
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # published t10k counts
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
T10K_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def mnist_root(shared_data: Path) -> Path:
    root = shared_data / "mnist"
    missing = [n for n in TRAIN_FILES + T10K_FILES if not (root / n).is_file()]
    if missing:
        pytest.skip(f"MNIST IDX files not found in {root}: {', '.join(missing)}")
    return root


def _linked(folder: Path, root: Path, names: tuple[str, ...]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(root / name)
    return folder


@pytest.mark.data
def test_real_train_and_t10k_are_the_train_and_test_splits(mnist_root):
    ds = create_dataset("mnist", mnist_root)
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.labels.bincount().tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert ds.test.labels.bincount().tolist() == MNIST_TEST_CLASS_COUNTS
    assert ds.valid is None and ds.notes == []  # the validation split is drawn from train by load_dataset
    for split in (ds.train, ds.test):
        assert 0 < split.images.float().mean() / 255 < 0.25  # mostly black background, white strokes


@pytest.mark.data
def test_real_t10k_alone_becomes_the_train_split_and_says_so(mnist_root, tmp_path):
    ds = create_dataset("mnist", _linked(tmp_path / "t10k", mnist_root, T10K_FILES))
    assert ds.train.images.shape == (10000, 1, 28, 28) and ds.test is None and ds.valid is None
    assert ds.train.labels.bincount().tolist() == MNIST_TEST_CLASS_COUNTS
    assert any("using the t10k files as the training split" in n for n in ds.notes)


@pytest.mark.data
def test_real_train_alone_has_no_test_split(mnist_root, tmp_path):
    ds = create_dataset("mnist", _linked(tmp_path / "train", mnist_root, TRAIN_FILES))
    assert len(ds.train) == 60000 and ds.test is None
    assert any("test metrics skipped" in n for n in ds.notes)


def _idx(magic: int, arr: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def test_idx_train_and_test_plain_and_gz(tmp_path):
    rng = np.random.default_rng(1)
    imgs, labels = rng.integers(0, 256, (5, 28, 28)), np.array([3, 1, 4, 1, 5])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(2051, imgs))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(2049, labels))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(2051, imgs[:2])))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(2049, labels[:2])))
    ds = create_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), imgs)
    assert ds.train.labels.tolist() == [3, 1, 4, 1, 5] and ds.test.labels.tolist() == [3, 1]
    assert ds.train.images.numpy().flags.writeable


@pytest.mark.parametrize("images, labels, match", [
    (_idx(2049, np.zeros((2, 28, 28))), _idx(2049, np.zeros(2)), r"magic 2049 \(type 0x08, ndim 1\), expected 2051"),
    (_header(0x0D03, 2, 28, 28), _idx(2049, np.zeros(2)), r"magic 3331 \(type 0x0d, ndim 3\), expected 2051"),
    (_idx(2051, np.zeros((2, 28, 28)))[:-10], _idx(2049, np.zeros(2)), "header says"),
    (_idx(2051, np.zeros((2, 28, 28)))[:10], _idx(2049, np.zeros(2)), "header ends after 10 bytes"),
    (_idx(2051, np.zeros((2, 28, 28))) + b"\0", _idx(2049, np.zeros(2)), "trailing data"),
    (_idx(2051, np.zeros((2, 28, 28))), _idx(2049, np.zeros(3)), "2 images but"),
    (_idx(2051, np.zeros((1, 28, 28))), _idx(2049, np.array([11])), "outside 0..9"),
], ids=["labels_magic", "float_type", "short_data", "short_header", "trailing", "count_mismatch", "label_range"])
def test_bad_files_are_named(tmp_path, images, labels, match):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(DataError, match=match) as info:
        create_dataset("mnist", tmp_path)
    assert "t10k-" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("dims, words", [
    ((2**32 - 1, 2**32 - 1, 2**32 - 1), "over the limit"),  # 7.9e28 values: would overflow int64
    ((60000, 28, 2**32 - 1), "over the limit"),
    ((10**6, 2000, 2000), "over the limit"),  # each dimension plausible, the product is not
])
def test_declared_dims_are_bounded_before_reading_the_data(tmp_path, dims, words):
    path = tmp_path / "x-images-idx3-ubyte"
    path.write_bytes(_header(2051, *dims))
    with pytest.raises(DataError, match=words):
        read_idx(path, 2051)


def _gzip_bomb(path: Path, header: bytes, zeros: int) -> None:
    """header + `zeros` zero bytes, gzipped without holding them in memory (~1 KB per MB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    parts, block = [comp.compress(header)], bytes(1 << 20)
    parts += [comp.compress(block) for _ in range(zeros >> 20)]
    path.write_bytes(b"".join(parts) + comp.flush())


def test_a_gzip_bomb_is_not_inflated_beyond_what_the_header_promises(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    _gzip_bomb(path, _header(2051, 1, 28, 28), 64 << 20)  # 784 values promised, 64 MiB inflate
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="trailing data"):
            read_idx(path, 2051)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak:,} bytes allocated while reading a 784-value file"


def test_a_corrupt_gzip_stream_is_a_data_error(tmp_path):
    data = bytearray(gzip.compress(_idx(2051, np.arange(2 * 28 * 28).reshape(2, 28, 28) % 7)))
    data[len(data) // 2] ^= 0xFF  # inside the deflate stream: zlib.error, not an OSError
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        read_idx(path, 2051)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="no MNIST files"):
        create_dataset("mnist", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(2051, np.zeros((1, 28, 28))))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        create_dataset("mnist", tmp_path)

