"""GTSRB in the official archive layout, read (and, only when asked, downloaded) by
torchvision.datasets.GTSRB: root/gtsrb/GTSRB/Training/<class>/*.ppm, root/gtsrb/GTSRB/Final_Test/Images
+ root/gtsrb/GT-final_test.csv. The images vary in size (15..250 px), so each is resized to one side
(data.image_size, default 32 like the Kaggle pickles) to make one uint8 tensor; decoded arrays are cached.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np

from .cache import Expected, cache_dirs, fingerprint, load_cached, save_cached
from .dataset import ImageDataset, ImageSplit
from .decode import decode_parallel, resize_rgb
from .errors import DataError
from .gtsrb_names import GTSRB_CLASS_NAMES
from .registry import register_dataset

log = logging.getLogger(__name__)
DEFAULT_SIDE = 32  # px, the side of the Kaggle pickles


@register_dataset("gtsrb")
def load_gtsrb(root: Path | None, *, download: bool = False, image_size: int | None = None,
               cache_dir: str | None = None) -> ImageDataset:
    if root is None:
        raise DataError("data.root is not set: the 'gtsrb' dataset needs a folder to read "
                        "(or download) it in")
    side = image_size or DEFAULT_SIDE
    datasets = {s: _open_split(root, s, download) for s in ("train", "test")}
    if datasets["train"] is None:
        raise DataError(f"no official GTSRB training images under {root / 'gtsrb'}: set data.download=true "
                        "to fetch them (about 260 MB), or point data.root at a folder that holds gtsrb/GTSRB/"
                        "Training (or use data.name=gtsrb_pickle for the Kaggle pickles)")
    present = {s: ds for s, ds in datasets.items() if ds is not None}
    arrays = _decode_cached(root, present, side, cache_dir)
    splits = {s: ImageSplit.from_nhwc(arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in present}
    notes = [] if "test" in present else [
        f"no official GTSRB test set under {root / 'gtsrb'}: test metrics skipped"]
    return ImageDataset(splits["train"], None, splits.get("test"), list(GTSRB_CLASS_NAMES), notes)


def _open_split(root: Path, split: str, download: bool):
    """torchvision's GTSRB for one split, or None when its files are absent (and not downloaded)."""
    from torchvision.datasets import GTSRB  # torchvision only when this format is used

    try:
        return GTSRB(str(root), split=split, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found" / a failed checksum
        if download:
            raise DataError(f"GTSRB {split} download into {root} failed: {err}") from None
        return None
    except OSError as err:  # no network, disk full, unreadable csv
        raise DataError(f"GTSRB {split} under {root}: {err}") from None


def _decode_cached(root: Path, datasets: dict, side: int, cache_dir: str | None) -> dict[str, np.ndarray]:
    files = sorted(p for p in (root / "gtsrb").rglob("*") if p.suffix in (".ppm", ".csv"))
    key = fingerprint(root, files, format="gtsrb", side=side, splits=sorted(datasets))
    dirs, name = cache_dirs(root, cache_dir), f"gtsrb-{key}.npz"
    expected = Expected({s: len(ds) for s, ds in datasets.items()}, len(GTSRB_CLASS_NAMES), side, (3,))
    arrays = load_cached(dirs, name, expected)
    if arrays is None:
        arrays = {}
        for split, ds in datasets.items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = _decode_split(ds, side)
        save_cached(dirs, name, arrays)
    return arrays


def _decode_split(ds, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode through the dataset's public indexing (ds[i] -> (image, label)) on a thread pool."""
    ds.transform = partial(resize_rgb, side=side)  # PIL RGB image -> side x side x 3 uint8
    labels = np.empty(len(ds), dtype=np.int64)

    def fetch(i: int) -> np.ndarray:
        image, labels[i] = ds[i]
        return image

    try:
        images = decode_parallel(len(ds), fetch, side)
    except OSError as err:  # a truncated .ppm, or a csv naming a missing file
        raise DataError(f"GTSRB under {ds.root}: cannot decode an image ({err})") from None
    log.info("decoded %d GTSRB images at %d px", len(ds), side)
    return images, labels
