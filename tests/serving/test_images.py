"""Uploaded image bytes go through the data package's guarded decoder: 400 for what is not an accepted
image, 413 for a declared size over the limit (ours or Pillow's), checked before any pixel is decoded."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from image_bytes import EPS, png_header
from PIL import EpsImagePlugin, Image

from cnnsweep.serving.http_error import HttpError
from cnnsweep.serving.images import decode_image, load_pixels, open_image


def _encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def _error(data: bytes, max_pixels: int) -> HttpError:
    with pytest.raises(HttpError) as info:
        decode_image(data, max_pixels)
    assert "\n" not in info.value.message
    return info.value


def test_accepted_formats_decode_to_uint8():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_encode(rgb), 600), rgb)
    np.testing.assert_array_equal(decode_image(_encode(rgb, "PPM"), 600), rgb)
    assert decode_image(_encode(rgb[..., 0], "PPM"), 600).shape == (20, 30)  # PGM: gray stays one channel
    assert decode_image(_encode(rgb, "JPEG"), 600).shape == (20, 30, 3)


def test_postscript_and_bmp_are_not_decoded(monkeypatch):
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript was started"))
    err = _error(EPS, 10_000)
    assert err.status == 400 and err.message.startswith("not a PNG, JPEG, PPM image (")
    assert _error(_encode(np.zeros((4, 4, 3), np.uint8), "BMP"), 10_000).status == 400
    assert _error(b"", 10_000).message == "image is empty"


@pytest.mark.parametrize("side, max_pixels", [
    (101, 10_000),  # over the server's limit
    (10_000, 200_000_000),  # under a (too) generous setting, but over Pillow's warning limit
    (100_000, 200_000_000),  # over Pillow's hard limit
])
def test_declared_size_over_a_limit_is_413_before_decoding(side, max_pixels):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = _error(png_header(side, side), max_pixels)
    assert err.status == 413 and ("the limit is" in err.message or "too large" in err.message)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_truncated_pixels_are_400_at_decode_time():
    img = open_image(_encode(np.zeros((40, 40, 3), np.uint8))[:60], 10_000)  # the header is intact
    with pytest.raises(HttpError) as info:
        load_pixels(img)
    assert info.value.status == 400 and "truncated or corrupt" in info.value.message
