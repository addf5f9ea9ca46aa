"""GTSRB in the Kaggle "traffic-signs-preprocessed" layout: train/valid/test.pickle + label_names.csv.

Each pickle is a dict with `features` (uint8 N x 32 x 32 x 3, RGB) and `labels` (N). The files are
read with the restricted unpickler, so a tampered pickle cannot run code; labels are capped so a
crafted one cannot make the class list huge.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .dataset import MAX_CLASS_NAME_LENGTH, MAX_NUM_CLASSES, ImageDataset, ImageSplit
from cnnsweep.errors import DataError
from .gtsrb_names import GTSRB_CLASS_NAMES
from .registry import register_dataset, require_root
from .safe_pickle import load_pickle

# label_names.csv is read whole only below this size: MAX_NUM_CLASSES rows of a long name, with room to spare
MAX_NAMES_BYTES = 2 * MAX_NUM_CLASSES * (MAX_CLASS_NAME_LENGTH + 16)
_WHERE = ("Kaggle dataset 'traffic-signs-preprocessed' (train.pickle, valid.pickle, label_names.csv); "
          "download it and set data.root to its folder")


@register_dataset("gtsrb_pickle")
def load_gtsrb_pickle(root: Path | None) -> ImageDataset:
    root = require_root("gtsrb_pickle", root, _WHERE)
    if not (root / "train.pickle").is_file():
        raise DataError(f"no train.pickle in {root}: expected the {_WHERE}")
    notes: list[str] = []
    splits = {"train": _load_split(root / "train.pickle")}
    for name in ("valid", "test"):
        path = root / f"{name}.pickle"
        if path.is_file():
            splits[name] = _load_split(path)
        else:
            notes.append(f"no {name}.pickle in {root}" + (": test metrics skipped" if name == "test" else ""))
    class_names = _load_class_names(root, splits, notes)
    return ImageDataset(splits["train"], splits.get("valid"), splits.get("test"), class_names, notes)


def _load_split(path: Path) -> ImageSplit:
    d = load_pickle(path)
    if not isinstance(d, dict) or "features" not in d or "labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DataError(f"{path}: expected a dict with 'features' and 'labels', got {keys}")
    x, y = d["features"], d["labels"]
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(f"{path}: 'features' and 'labels' must be numpy arrays, "
                        f"got {type(x).__name__} and {type(y).__name__}")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{path}: 'features' must be uint8 N x H x W x C with C in (1, 3), "
                        f"got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be {len(x)} integers, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= MAX_NUM_CLASSES):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise DataError(f"{path}: label {bad} out of range (labels must be 0..{MAX_NUM_CLASSES - 1})")
    return ImageSplit.from_nhwc(x, y)


def _load_class_names(root: Path, splits: dict[str, ImageSplit], notes: list[str]) -> list[str]:
    num_labels = max(int(s.labels.max()) + 1 for s in splits.values() if len(s))
    path = root / "label_names.csv"
    if not path.is_file():
        if num_labels <= len(GTSRB_CLASS_NAMES):
            notes.append(f"no label_names.csv in {root}: using the standard GTSRB class names")
            return list(GTSRB_CLASS_NAMES)
        notes.append(f"no label_names.csv in {root}: classes are named by their ids")
        return [str(i) for i in range(num_labels)]
    names = _read_label_names(path)
    if len(names) < num_labels:
        raise DataError(f"{path}: names {len(names)} classes but the pickles use labels "
                        f"up to {num_labels - 1}")
    return names


def _label_rows(path: Path) -> list[dict]:
    """The rows of label_names.csv; a file too big, not UTF-8 or not CSV is a DataError."""
    with path.open("rb") as f:
        raw = f.read(MAX_NAMES_BYTES + 1)
    if len(raw) > MAX_NAMES_BYTES:
        raise DataError(f"{path}: larger than {MAX_NAMES_BYTES} bytes, more than {MAX_NUM_CLASSES} "
                        "class names can hold (at most that many classes are supported)")
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except csv.Error as err:
        raise DataError(f"{path}: cannot read it as CSV ({err})") from None
    if len(rows) > MAX_NUM_CLASSES:
        raise DataError(f"{path}: more than {MAX_NUM_CLASSES} class names (at most that many are supported)")
    return rows


def _read_label_names(path: Path) -> list[str]:
    rows = _label_rows(path)
    try:
        by_id = {int(r["ClassId"]): r["SignName"] for r in rows}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: expected columns ClassId,SignName with integer ids") from None
    missing = [i for i, name in by_id.items() if name is None]
    if missing:
        raise DataError(f"{path}: ClassId {missing[0]} has no SignName")
    if sorted(by_id) != list(range(len(by_id))):
        raise DataError(f"{path}: ClassId must run 0..{len(by_id) - 1} without gaps")
    return [by_id[i] for i in range(len(by_id))]
