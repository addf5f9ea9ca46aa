"""GTSRB in the official archive layout (torchvision's folder names; torchvision is used only to
download it, when asked): root/gtsrb/GTSRB/Training/<5-digit class id>/*.ppm, and the test images in
root/gtsrb/GTSRB/Final_Test/Images with their labels in root/gtsrb/GT-final_test.csv. The images vary in
size (15..250 px), so each is resized to one side (data.image_size, default 32 like the Kaggle pickles)
to make one uint8 tensor; decoded arrays are cached.

Every file is untrusted: images go through the guarded decoder (PPM/PNG/JPEG only, the pixel limit,
nothing read through a link out of the data root), class folders must be class ids, and the CSV is
bounded in bytes and rows, with plain file names and class ids checked on every row.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path

import numpy as np

from .cache import Expected, cache_dirs, fingerprint, load_cached, save_cached
from .dataset import ImageDataset, ImageSplit
from .decode import decode_parallel, load_rgb, open_file
from cnnsweep.errors import DataError
from .gtsrb_names import GTSRB_CLASS_NAMES
from .registry import register_dataset

log = logging.getLogger(__name__)
DEFAULT_SIDE = 32  # px, the side of the Kaggle pickles
FORMATS = ("PPM", "PNG", "JPEG")  # Pillow decoders tried on GTSRB files (the archive holds PPM only)
MAX_CSV_BYTES = 16 << 20  # GT-final_test.csv, bytes: the official one is ~0.5 MB
MAX_TEST_ROWS = 1_000_000  # rows of GT-final_test.csv: the official test set has 12,630
_NUM_CLASSES = len(GTSRB_CLASS_NAMES)
_CLASS_DIR = re.compile(r"\d{1,5}")  # Training/00000 .. Training/00042
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")  # no folder, no '..', no control characters
_TRAIN, _TEST = ("GTSRB", "Training"), ("GTSRB", "Final_Test", "Images")
_CSV = "GT-final_test.csv"


@register_dataset("gtsrb")
def load_gtsrb(root: Path | None, *, download: bool = False, image_size: int | None = None,
               cache_dir: str | None = None) -> ImageDataset:
    if root is None:
        raise DataError("data.root is not set: the 'gtsrb' dataset needs a folder to read "
                        "(or download) it in")
    side = image_size or DEFAULT_SIDE
    base = root / "gtsrb"
    for split in ("train", "test") if download else ():
        _download(root, split)
    if not base.joinpath(*_TRAIN).is_dir():
        raise DataError(f"no official GTSRB training images under {base}: set data.download=true "
                        "to fetch them (about 260 MB), or point data.root at a folder that holds gtsrb/GTSRB/"
                        "Training (or use data.name=gtsrb_pickle for the Kaggle pickles)")
    present = {"train": _train_files(base.joinpath(*_TRAIN))}
    if base.joinpath(*_TEST).is_dir():
        present["test"] = _test_files(base, root)
    arrays = _decode_cached(root, present, side, cache_dir)
    splits = {s: ImageSplit.from_nhwc(arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in present}
    notes = [] if "test" in present else [f"no official GTSRB test set under {base}: test metrics skipped"]
    return ImageDataset(splits["train"], None, splits.get("test"), list(GTSRB_CLASS_NAMES), notes)


def _download(root: Path, split: str) -> None:
    """Fetch one split's archives through torchvision (checksummed), unless its folder is there."""
    if (root / "gtsrb").joinpath(*(_TRAIN if split == "train" else _TEST)).is_dir():
        return
    from torchvision.datasets import GTSRB  # torchvision only when a download is asked for

    try:
        GTSRB(str(root), split=split, download=True)
    except (RuntimeError, OSError, ValueError) as err:  # no network, a failed checksum, disk full
        raise DataError(f"GTSRB {split} download into {root} failed: {err}") from None


def _train_files(folder: Path) -> tuple[list[Path], list[int]]:
    """Every .ppm under Training/<class id>/ (recursively, links not followed), labelled by its folder."""
    files, labels = [], []
    for d in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        if not (_CLASS_DIR.fullmatch(d.name) and int(d.name) < _NUM_CLASSES):
            raise DataError(f"{d}: not a GTSRB class folder (00000 .. {_NUM_CLASSES - 1:05d})")
        found = sorted(Path(top, f) for top, dirs, names in os.walk(d) for f in names
                       if f.lower().endswith(".ppm") and not f.startswith("."))
        files += found
        labels += [int(d.name)] * len(found)
    if not files:
        raise DataError(f"no .ppm images in the class folders of {folder}")
    return files, labels


def _test_files(base: Path, root: Path) -> tuple[list[Path], list[int]]:
    """The test images and labels named by GT-final_test.csv (';'-separated, header row first)."""
    path, images = base / _CSV, base.joinpath(*_TEST)
    reader = csv.DictReader(io.StringIO(_read_csv(path, root), newline=""), delimiter=";",
                            skipinitialspace=True)
    files, labels = [], []
    try:
        if not {"Filename", "ClassId"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path}: no Filename and ClassId columns in its first line")
        for row in reader:
            if len(files) == MAX_TEST_ROWS:
                raise DataError(f"{path} line {reader.line_num}: more than {MAX_TEST_ROWS:,} test images")
            name, label = _checked_row(row, f"{path} line {reader.line_num}")
            files.append(images / name)
            labels.append(label)
    except csv.Error as err:  # a field over csv.field_size_limit, a stray quote
        raise DataError(f"{path} line {reader.line_num}: {err}") from None
    return files, labels


def _checked_row(row: dict, where: str) -> tuple[str, int]:
    name, label = row.get("Filename"), row.get("ClassId")
    if name is None or label is None:
        raise DataError(f"{where}: Filename or ClassId missing")
    if not _FILE_NAME.fullmatch(name):
        raise DataError(f"{where}: Filename {ascii(name[:100])} is not a plain file name")
    if not (_CLASS_DIR.fullmatch(label) and int(label) < _NUM_CLASSES):
        raise DataError(f"{where}: ClassId {ascii(label[:100])} is not a class id 0..{_NUM_CLASSES - 1}")
    return name, int(label)


def _read_csv(path: Path, root: Path) -> str:
    """The CSV's text: a regular file inside the data root, at most MAX_CSV_BYTES of UTF-8."""
    try:
        with open_file(path, root) as f:
            size = os.fstat(f.fileno()).st_size
            data = b"" if size > MAX_CSV_BYTES else f.read(MAX_CSV_BYTES + 1)  # a file can grow while read
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if max(size, len(data)) > MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than the {MAX_CSV_BYTES:,}-byte limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path} line {line}: not UTF-8 text (byte offset {err.start})") from None


def _decode_cached(root: Path, present: dict, side: int, cache_dir: str | None) -> dict[str, np.ndarray]:
    csv_file = [root / "gtsrb" / _CSV] if "test" in present else []
    files = [f for fs, _ in present.values() for f in fs] + csv_file
    key = fingerprint(root, files, format="gtsrb", side=side, splits=sorted(present))
    dirs, name = cache_dirs(root, cache_dir), f"gtsrb-{key}.npz"
    expected = Expected({s: len(fs) for s, (fs, _) in present.items()}, _NUM_CLASSES, side, (3,))
    arrays = load_cached(dirs, name, expected)
    if arrays is None:
        arrays = {}
        for split, (fs, labels) in present.items():
            arrays[f"{split}_images"] = decode_parallel(
                len(fs), lambda i, fs=fs: load_rgb(fs[i], side, root, FORMATS), side)
            arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
            log.info("decoded %d GTSRB %s images at %d px", len(fs), split, side)
        save_cached(dirs, name, arrays)
    return arrays
