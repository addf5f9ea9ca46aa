"""Uploaded image bytes -> uint8 H x W x C pixels, refusing what could hurt the replica.

Decoded by the data package's guarded decoder (the one image folders and `cnnsweep predict` use too):
only the PNG, JPEG and PPM decoders are tried; the pixel count declared in the header is checked
*before* decoding (a tiny PNG can declare 100k x 100k: a decompression bomb), and Pillow's own bomb
warning and error are the same 413; truncated files are errors, not silently padded (Pillow's
LOAD_TRUNCATED_IMAGES stays False).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnsweep.data.decode import ImageTooLarge, load_image
from cnnsweep.data.decode import open_image as open_checked
from cnnsweep.errors import DataError
from cnnsweep.serving.http_error import HttpError, bad_request

FORMATS = ("PNG", "JPEG", "PPM")  # PPM covers the P1-P6 netpbm family GTSRB's originals come in
IMAGE_CONTENT_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/x-portable-pixmap",
                       "image/x-portable-anymap", "image/x-portable-graymap", "image/x-portable-bitmap",
                       "application/octet-stream"}
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "F"}


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only and check the declared size; pixels are decoded by `load_pixels`."""
    if not data:
        raise bad_request("image is empty")
    try:
        return open_checked(data, max_pixels=max_pixels, formats=FORMATS)
    except ImageTooLarge as err:
        raise HttpError(413, str(err)) from None
    except DataError as err:
        raise bad_request(str(err)) from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG/PPM bytes -> uint8 array H x W (gray) or H x W x 3/4."""
    return load_pixels(open_image(data, max_pixels))


def load_pixels(img: Image.Image) -> np.ndarray:
    """Decode an opened image to uint8 H x W (gray) or H x W x 3/4; corrupt or truncated data -> 400."""
    try:
        img = load_image(img)
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
    except DataError as err:
        raise bad_request(str(err)) from None
    except ValueError as err:  # a mode Pillow cannot convert
        raise bad_request(f"image mode {img.mode} cannot be converted: {err}") from None
    return np.asarray(img, dtype=np.uint8)
