"""scikit-learn's handwritten digits: 1,797 real 8x8 images, 10 classes, shipped inside the package
(the embedded default: it needs no download and no data.root)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset, ImageSplit
from .registry import register_dataset

_LEVELS = 16  # load_digits pixel values run 0..16 (counts of set pixels in 4x4 blocks)


@register_dataset("digits")
def load_digits(root: Path | None = None) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / _LEVELS)).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    split = ImageSplit(torch.from_numpy(images), torch.from_numpy(bunch.target.astype(np.int64)))
    notes = ["digits: one split only (validation drawn from it; no test split)"]
    if root is not None:
        notes.append(f"digits ships inside scikit-learn: data.root {str(root)!r} is ignored")
    return ImageDataset(split, None, None, [str(d) for d in range(10)], notes)
