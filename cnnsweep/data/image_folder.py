"""Image folders: root/<class>/*.jpg|png|ppm|bmp (how AHE ships), optionally split into
root/train, root/valid (or val), root/test. Decoded once into uint8 arrays and cached as .npz."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import Expected, cache_dirs, fingerprint, load_cached, save_cached
from .dataset import ImageDataset, ImageSplit, check_num_classes
from .decode import IMAGE_EXTENSIONS, decode_parallel, load_rgb, most_common_side, read_sizes, squeeze_gray
from cnnsweep.errors import DataError
from .registry import register_dataset, require_root

log = logging.getLogger(__name__)
_SPLIT_NAMES = {"valid": ("valid", "val", "validation"), "test": ("test",)}
_HINT = "expected root/<class>/*.jpg (or root/train/<class>/...); set data.root"


@dataclass
class FolderLayout:
    """What is on disk, before decoding: the files of each split with their labels."""

    class_names: list[str]
    files: dict[str, list[Path]] = field(default_factory=dict)  # split -> files
    labels: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@register_dataset("image_folder")
def load_image_folder(root: Path | None, *, image_size: int | None = None,
                      cache_dir: str | None = None) -> ImageDataset:
    root = require_root("image_folder", root, _HINT)
    layout = scan_image_folder(root)
    arrays = _decode_cached(root, layout, image_size, cache_dir)
    splits = {s: ImageSplit.from_nhwc(arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in layout.files}
    return ImageDataset(splits["train"], splits.get("valid"), splits.get("test"),
                        layout.class_names, layout.notes)


def scan_image_folder(root: Path) -> FolderLayout:
    """List the files of every split; classes are the train split's non-empty folders, sorted."""
    split_roots = _split_roots(root)
    train_dirs = _class_dirs(split_roots["train"])
    check_num_classes(len(train_dirs), split_roots["train"])  # before walking every folder
    files = {d.name: _image_files(d) for d in train_dirs}
    layout = FolderLayout(class_names=[name for name, fs in files.items() if fs])
    if not layout.class_names:
        raise DataError(f"no images in {split_roots['train']}: {_HINT} "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    empty = sorted(set(files) - set(layout.class_names))
    if empty:
        layout.notes.append(f"skipped class folders without images: {', '.join(empty)}")
    for split, folder in split_roots.items():
        _add_split(layout, split, folder)
    _note_missing_splits(layout, root, split_roots)
    return layout


def _split_roots(root: Path) -> dict[str, Path]:
    if not (root / "train").is_dir():
        return {"train": root}
    out = {"train": root / "train"}
    for split, names in _SPLIT_NAMES.items():
        found = [root / n for n in names if (root / n).is_dir()]
        if found:
            out[split] = found[0]
    return out


def _add_split(layout: FolderLayout, split: str, folder: Path) -> None:
    index = {name: i for i, name in enumerate(layout.class_names)}
    layout.files[split], layout.labels[split] = [], []
    for d in _class_dirs(folder):
        fs = _image_files(d)
        if fs and d.name not in index:
            raise DataError(f"{d}: class {d.name!r} is not among the train classes {layout.class_names}")
        layout.files[split] += fs
        layout.labels[split] += [index.get(d.name, -1)] * len(fs)
    if not layout.files[split]:
        raise DataError(f"no images in {folder}: {_HINT}")
    _note_duplicate_names(layout, split)


def _class_dirs(folder: Path) -> list[Path]:
    # hidden folders are skipped: <root>/.cnnsweep_cache is not a class
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files under folder (recursively), sorted; os.walk avoids one stat() per file."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _note_duplicate_names(layout: FolderLayout, split: str) -> None:
    """Same file name under two classes usually means one image with two labels (AHE has three)."""
    classes_of = defaultdict(set)
    for f, y in zip(layout.files[split], layout.labels[split]):
        classes_of[f.name].add(y)
    dupes = sorted(name for name, ys in classes_of.items() if len(ys) > 1)
    if dupes:
        layout.notes.append(f"{split}: {len(dupes)} file name(s) appear under more than one class, "
                            f"so those images carry conflicting labels (e.g. {dupes[0]})")


def _note_missing_splits(layout: FolderLayout, root: Path, split_roots: dict[str, Path]) -> None:
    if "valid" not in split_roots:
        layout.notes.append(f"no valid/ (or val/) folder in {root}")
    if "test" not in split_roots:
        layout.notes.append(f"no test/ folder in {root}: test metrics skipped")


def _decode_cached(root: Path, layout: FolderLayout, image_size: int | None,
                   cache_dir: str | None) -> dict[str, np.ndarray]:
    all_files = [f for fs in layout.files.values() for f in fs]
    key = fingerprint(root, all_files, format="image_folder", image_size=image_size,
                      classes=layout.class_names, splits=sorted(layout.files))
    dirs, name = cache_dirs(root, cache_dir), f"image_folder-{key}.npz"
    expected = Expected({s: len(fs) for s, fs in layout.files.items()}, len(layout.class_names), image_size)
    arrays = load_cached(dirs, name, expected)
    if arrays is not None:
        log.info("loaded %d decoded images from cache %s", len(all_files), name)
        return arrays
    start = time.perf_counter()
    arrays = _decode_layout(root, layout, image_size or most_common_side(read_sizes(all_files, root)))
    log.info("decoded %d images in %.1f s", len(all_files), time.perf_counter() - start)
    save_cached(dirs, name, arrays)
    return arrays


def _decode_layout(root: Path, layout: FolderLayout, side: int) -> dict[str, np.ndarray]:
    """Every file, read only if its real path is inside root (links out of the data root are refused)."""
    images = {}
    for split, files in layout.files.items():
        images[split] = decode_parallel(len(files), lambda i, fs=files: load_rgb(fs[i], side, root), side)
    arrays = {f"{s}_images": x for s, x in squeeze_gray(images).items()}
    arrays.update({f"{s}_labels": np.asarray(y, dtype=np.int64) for s, y in layout.labels.items()})
    return arrays
