"""Decode many small image files into one uint8 array, on a thread pool.

Image decoding in Pillow releases the GIL, so threads overlap the decoding of different files; the
pool works on chunks so that the per-image overhead stays a few microseconds (no process start-up,
no pickling of pixels between processes).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")
_CHUNK = 256  # images per pool task


def num_decode_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(n: int) -> list[range]:
    return [range(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None


def read_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """(width, height) of each file, from the headers only."""

    def work(chunk: range) -> list[tuple[int, int]]:
        out = []
        for i in chunk:
            with _open(paths[i]) as im:
                out.append(im.size)
        return out

    with ThreadPoolExecutor(num_decode_threads()) as pool:
        return [s for part in pool.map(work, _chunks(len(paths))) for s in part]


def most_common_side(sizes: Sequence[tuple[int, int]]) -> int:
    """The side every image is resized to when data.image_size is not set: the most common size
    (its larger side when that size is not square)."""
    if not sizes:
        raise DataError("no images to size")
    (w, h), _ = Counter(sizes).most_common(1)[0]
    return max(w, h)


def load_rgb(path: Path, side: int) -> np.ndarray:
    """One file -> side x side x 3 uint8 (grayscale/palette/alpha images converted to RGB)."""
    with _open(path) as im:
        try:
            rgb = im.convert("RGB")
        except OSError as err:  # truncated or corrupt pixel data shows up at decode time
            raise DataError(f"{path}: cannot decode ({err})") from None
    return resize_rgb(rgb, side)


def resize_rgb(im: Image.Image, side: int) -> np.ndarray:
    """Squash to side x side (aspect ratio not kept, as the Kaggle GTSRB pickles were made)."""
    if im.size != (side, side):
        im = im.resize((side, side), Image.Resampling.BILINEAR)  # Pillow antialiases when shrinking
    return np.asarray(im, dtype=np.uint8)


def decode_parallel(num: int, fetch: Callable[[int], np.ndarray], side: int) -> np.ndarray:
    """N x side x side x 3 uint8, image i from fetch(i), filled in place by a thread pool."""
    out = np.empty((num, side, side, 3), dtype=np.uint8)

    def work(chunk: range) -> None:
        for i in chunk:
            out[i] = fetch(i)

    with ThreadPoolExecutor(num_decode_threads()) as pool:
        list(pool.map(work, _chunks(num)))  # list(): re-raise the first worker error here
    return out


def squeeze_gray(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep one channel when every image of every split is gray (R == G == B everywhere), so a
    grayscale dataset stored as RGB files trains with in_channels=1; a single gray image among
    colour ones (AHE has one) stays RGB."""
    if all(_all_gray(x) for x in arrays.values()):
        return {k: np.ascontiguousarray(x[..., :1]) for k, x in arrays.items()}
    return arrays


def _all_gray(images: np.ndarray) -> bool:
    for start in range(0, len(images), 4096):  # chunked: the comparison allocates a bool per pixel
        part = images[start:start + 4096]
        if not ((part[..., 0] == part[..., 1]).all() and (part[..., 1] == part[..., 2]).all()):
            return False
    return True
