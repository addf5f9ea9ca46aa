"""Uploaded image bytes -> uint8 H x W x C pixels, refusing what could hurt the replica.

Guards: only PNG, JPEG and PPM decoders are tried; the pixel count declared in the header is
checked *before* decoding (a tiny PNG can declare 100k x 100k: a decompression bomb); truncated
files are errors, not silently padded (Pillow's LOAD_TRUNCATED_IMAGES stays False).
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnsweep.serving.errors import HttpError, bad_request

FORMATS = ("PNG", "JPEG", "PPM")  # PPM covers the P1-P6 netpbm family GTSRB's originals come in
IMAGE_CONTENT_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/x-portable-pixmap",
                       "image/x-portable-anymap", "image/x-portable-graymap", "image/x-portable-bitmap",
                       "application/octet-stream"}
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "F"}


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked next
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as err:  # Pillow's hard stop at 2 x MAX_IMAGE_PIXELS, at open time
        raise HttpError(413, f"image is too large to decode: {err}; the limit is {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise bad_request(f"not a {', '.join(FORMATS)} image ({len(data):,} bytes, starting {data[:8]!r})") from None
    except (OSError, SyntaxError, ValueError) as err:  # a broken header
        raise bad_request(f"image header is corrupt: {err}") from None


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only and check the declared size; pixels are decoded by `load_pixels`."""
    if not data:
        raise bad_request("image is empty")
    img = _open(data, max_pixels)
    w, h = img.size
    if w * h > max_pixels:
        raise HttpError(413, f"image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    return img


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG/PPM bytes -> uint8 array H x W (gray) or H x W x 3/4."""
    return load_pixels(open_image(data, max_pixels))


def load_pixels(img: Image.Image) -> np.ndarray:
    """Decode an opened image to uint8 H x W (gray) or H x W x 3/4; corrupt or truncated data -> 400."""
    try:
        img.load()
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise bad_request(f"image data is truncated or corrupt: {err}") from None
    return np.asarray(img, dtype=np.uint8)
