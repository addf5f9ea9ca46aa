"""Image files -> uint8 arrays: the one guarded decoder (also behind predict and serving), and the thread
pool that decodes many small files into one array.

Every file is untrusted. `open_image` reads the header only, with only the decoders asked for (so a
PostScript file named .png never reaches Ghostscript), and refuses a declared size over the pixel limit
before any pixel is decoded (a tiny PNG can declare 100k x 100k: a decompression bomb). `open_file`
reads only regular files whose real path stays inside the root (links out of a data folder are not
followed). Image decoding in Pillow releases the GIL, so threads overlap the decoding of different files;
the pool works on chunks so that the per-image overhead stays a few microseconds.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnsweep.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")
FORMATS = ("PNG", "JPEG", "PPM", "BMP")  # Pillow decoders for IMAGE_EXTENSIONS (PPM: the P1-P6 netpbm family)
MAX_PIXELS = 4096 * 4096  # declared width x height of one image file, pixels
_CHUNK = 256  # images per pool task
# Broken headers and pixel data surface as any of these from Pillow's plugins.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def _half_memory() -> int:
    """Half the machine's RAM, bytes: the decoded array is copied once more into tensors."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): a fixed 16 GiB
        return 16 << 30


MAX_DECODED_BYTES = _half_memory()  # one decode_parallel array, bytes


class ImageTooLarge(DataError):
    """The declared image size is over the limit (serving answers 413, not 400)."""


def num_decode_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(n: int) -> list[range]:
    return [range(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]


def open_file(path: Path, root: Path | None = None) -> BinaryIO:
    """`path` opened for reading, if it is a regular file whose real path (every link followed) is
    inside `root`; the real path is what is opened, so the check holds for what is read. Errors do not
    repeat the path: the caller names the file as its user knows it."""
    real = Path(os.path.realpath(path))
    if root is not None and not real.is_relative_to(os.path.realpath(root)):
        raise DataError(f"a link to {real}, outside the data root {root}: not read")
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError("not a regular file")
    return os.fdopen(fd, "rb")


def _describe(source: bytes | BinaryIO) -> str:
    if isinstance(source, bytes):
        return f"{len(source):,} bytes, starting {source[:8]!r}"
    source.seek(0)
    return f"starting {source.read(8)!r}"


def open_image(source: bytes | BinaryIO, *, max_pixels: int, formats: Sequence[str] = FORMATS) -> Image.Image:
    """Read the header only, with only the `formats` decoders, and check the declared size; pixels are
    decoded by `load_image`. Bad input raises DataError (ImageTooLarge for the size)."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # Pillow's own limit counts too
    try:
        # Pillow warns over MAX_IMAGE_PIXELS (89M) and raises over twice that: both become ImageTooLarge.
        # catch_warnings is process-wide; should threads race on it, the size check below still refuses.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=list(formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLarge(f"image is too large to decode ({err}); the limit is {limit:,} pixels") from None
    except UnidentifiedImageError:
        raise DataError(f"not a {', '.join(formats)} image ({_describe(source)})") from None
    except _CORRUPT as err:
        raise DataError(f"image header is corrupt: {err}") from None
    w, h = img.size  # Python ints: no overflow
    if w * h > limit:
        raise ImageTooLarge(f"image is {w}x{h} = {w * h:,} pixels; the limit is {limit:,}")
    return img


def load_image(img: Image.Image) -> Image.Image:
    """Decode the pixels of an image from `open_image`; corrupt or truncated data -> DataError."""
    try:
        img.load()
    except _CORRUPT as err:  # LOAD_TRUNCATED_IMAGES stays False: a short file is an error, not padding
        raise DataError(f"image data is truncated or corrupt: {err}") from None
    return img


def _read_file(path: Path, root: Path, read: Callable[[Image.Image], object], formats: Sequence[str] = FORMATS):
    """read(image) for one file of the data root, with only the `formats` decoders; errors name the file."""
    try:
        with open_file(path, root) as f, open_image(f, max_pixels=MAX_PIXELS, formats=formats) as img:
            return read(img)
    except DataError as err:  # ImageTooLarge stays ImageTooLarge
        raise type(err)(f"{path}: {err}") from None


def read_sizes(paths: Sequence[Path], root: Path) -> list[tuple[int, int]]:
    """(width, height) of each file, from the headers only (each checked against MAX_PIXELS)."""

    def work(chunk: range) -> list[tuple[int, int]]:
        return [_read_file(paths[i], root, lambda img: img.size) for i in chunk]

    with ThreadPoolExecutor(num_decode_threads()) as pool:
        return [s for part in pool.map(work, _chunks(len(paths))) for s in part]


def most_common_side(sizes: Sequence[tuple[int, int]]) -> int:
    """The side every image is resized to when data.image_size is not set: the most common size
    (its larger side when that size is not square)."""
    if not sizes:
        raise DataError("no images to size")
    (w, h), _ = Counter(sizes).most_common(1)[0]
    side = max(w, h)
    if side * side > MAX_PIXELS:  # e.g. many 16M x 1 images: each within the limit, the square is not
        raise DataError(f"the most common image size is {w}x{h}: a {side}x{side} square is over the limit "
                        f"of {MAX_PIXELS:,} pixels; set data.image_size")
    return side


def load_rgb(path: Path, side: int, root: Path, formats: Sequence[str] = FORMATS) -> np.ndarray:
    """One file of the data root -> side x side x 3 uint8 (grayscale/palette/alpha converted to RGB)."""
    return _read_file(path, root, lambda img: resize_rgb(_to_rgb(load_image(img)), side), formats)


def _to_rgb(img: Image.Image) -> Image.Image:
    try:
        return img.convert("RGB")
    except ValueError as err:  # a pixel mode Pillow cannot convert
        raise DataError(f"image mode {img.mode} cannot be converted to RGB: {err}") from None


def resize_rgb(im: Image.Image, side: int) -> np.ndarray:
    """Squash to side x side (aspect ratio not kept, as the Kaggle GTSRB pickles were made)."""
    if im.size != (side, side):
        im = im.resize((side, side), Image.Resampling.BILINEAR)  # Pillow antialiases when shrinking
    return np.asarray(im, dtype=np.uint8)


def decode_parallel(num: int, fetch: Callable[[int], np.ndarray], side: int) -> np.ndarray:
    """N x side x side x 3 uint8, image i from fetch(i), filled in place by a thread pool."""
    size = num * side * side * 3  # bytes, Python ints: checked before numpy allocates anything
    if size > MAX_DECODED_BYTES:
        raise DataError(f"{num:,} images of {side}x{side}x3 need {size / 2**30:,.1f} GiB, over the "
                        f"{MAX_DECODED_BYTES / 2**30:,.1f} GiB limit (half this machine's memory); "
                        "set a smaller data.image_size")
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
