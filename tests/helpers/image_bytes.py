"""Hostile image bytes shared by the decoder's tests (data) and the HTTP upload tests (serving)."""

from __future__ import annotations

import struct
import zlib

# An EPS file: Pillow would hand it to Ghostscript, i.e. run a program; the decoder must refuse it first.
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n"


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1-bit gray) but holds no pixel data: a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
