"""On-disk cache of decoded datasets (.npz of uint8 arrays), so the second load skips decoding.

The key hashes everything the decoded pixels depend on: the format, the resolved root, every file's
relative path, size and modification time, and the options (e.g. the resize side). A changed, added or
removed file therefore gives a new key instead of stale pixels.

A cache file is as untrusted as the images (it may sit in a shared data folder). Before anything is
allocated, every member's .npy header is checked against what the caller knows (`Expected`: images per
split, side, channels) and a byte cap; members must be stored, not deflated (no zip bomb), C-ordered
plain uint8/int64 arrays (no pickles) of exactly the declared length. The content must then match an
HMAC-SHA256 made with this user's random key (`cache.key` in the user cache, mode 0600), so a file
planted or edited by anyone else cannot replace training pixels. A file that fails any check is
ignored with a warning and rebuilt; loading never fails because of the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..atomic import atomic_write, atomic_write_bytes
from .decode import MAX_DECODED_BYTES, open_file
from cnnsweep.errors import DataError

log = logging.getLogger(__name__)
_VERSION = 2  # bump when the decoding or the file layout changes (2: HMAC member, checked headers)
_MAC = "mac"  # the member holding the HMAC-SHA256 (32 bytes) of the name and every array
_KEY_BYTES = 32  # this user's HMAC key, random bytes
_READ_BYTES = 16 << 20  # bytes per read while filling an array in place
_SLACK_BYTES = 1 << 20  # zip and .npy headers on top of the arrays, bytes
# What a damaged or foreign file raises from zipfile and numpy's header parser.
_BAD_FILE = (DataError, OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile)


@dataclass(frozen=True)
class Expected:
    """What a cache file must hold, known before it is opened: split -> number of images, the side
    (None: any, but one for every split), the channel counts allowed and the number of classes."""

    counts: dict[str, int]
    num_classes: int
    side: int | None = None
    channels: tuple[int, ...] = (1, 3)


def fingerprint(root: Path, files: Iterable[Path], **options: Any) -> str:
    """A hex key for the decoded content of `files` under `root` with `options`."""
    h = hashlib.sha256(json.dumps({"v": _VERSION, "root": str(root.resolve()), **options},
                                  sort_keys=True, default=str).encode())
    for f in files:
        try:
            st = f.stat()
            state = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError as err:  # e.g. a dangling link: decoding names the file, the key just differs
            state = f"unreadable {err.errno}"
        # surrogateescape: an undecodable file name hashes as its own bytes instead of raising
        line = f"{f.relative_to(root).as_posix()}\0{state}\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def _user_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnsweep"


def cache_dirs(root: Path, cache_dir: str | Path | None) -> list[Path]:
    """Where to look for a cache, in order: data.cache_dir or <root>/.cnnsweep_cache, then the user cache
    (the first may be read-only, e.g. a shared data folder)."""
    primary = Path(cache_dir).expanduser() if cache_dir else root / ".cnnsweep_cache"
    user = _user_dir()
    return [primary] if primary == user else [primary, user]


def load_cached(dirs: list[Path], name: str, expected: Expected) -> dict[str, np.ndarray] | None:
    """The arrays of the first `name` in `dirs` that passes every check, or None."""
    secret = _secret()
    for d in dirs if secret else []:
        path = d / name
        if not os.path.lexists(path):
            continue
        try:
            return _read_checked(path, name, expected, secret)
        except _BAD_FILE as err:
            log.warning("ignoring cache %s: %s; decoding again", path, err)
    return None


def save_cached(dirs: list[Path], name: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write `name` into the first writable dir; never fails the load (returns None instead)."""
    secret = _secret()
    if secret is None:
        return None  # _secret said why
    arrays = {**arrays, _MAC: _mac(secret, name, arrays)}
    for d in dirs:
        if not _marked_writable(d):
            log.info("cache dir %s is marked read-only; trying the next", d)
            continue
        try:
            # uncompressed: loading is then a plain read (~0.1 s per 100 MB); fsync + rename: a reader
            # never sees a half-written cache, even with concurrent loads
            return atomic_write(d / name, lambda f: np.savez(f, **arrays))
        except OSError as err:
            log.info("cache dir %s not writable (%s); trying the next", d, err)
    log.warning("decoded dataset not cached: no writable cache dir among %s", [str(d) for d in dirs])
    return None


def _marked_writable(d: Path) -> bool:
    """False when d (or the nearest folder that exists above it) has no write bit at all.

    The mode bits are checked, not just os.access: root may write anywhere, but a data folder shipped as
    r-x (like ../shared/data) means "do not add files here", so the cache goes to the user cache instead.
    """
    existing = next((p for p in (d, *d.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return False
    return os.access(existing, os.W_OK) and bool(existing.stat().st_mode & 0o222)


def _secret() -> bytes | None:
    """This user's HMAC key, made on first use; None (nothing cached) when it cannot be made or read,
    or when someone else could have written it (not ours, or group/other bits set)."""
    path = _user_dir() / "cache.key"
    try:
        if not os.path.lexists(path):
            atomic_write_bytes(path, os.urandom(_KEY_BYTES))  # a temp file from mkstemp: mode 0600
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as f:
            st, key = os.fstat(f.fileno()), f.read(_KEY_BYTES + 1)
    except OSError as err:
        log.warning("decoded datasets are not cached: no cache key at %s (%s)", path, err.strerror or err)
        return None
    foreign = hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o077)
    if not stat.S_ISREG(st.st_mode) or len(key) != _KEY_BYTES or foreign:
        log.warning("decoded datasets are not cached: %s must be a %d-byte file of this user with mode "
                    "0600 (delete it to make a new one)", path, _KEY_BYTES)
        return None
    return key


def _mac(secret: bytes, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """HMAC-SHA256 of the file name (it holds the key) and every array's name, dtype, shape and bytes."""
    h = hmac.new(secret, name.encode() + b"\0", hashlib.sha256)
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(_bytes(a))
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _bytes(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy (writable when the array is)."""
    return memoryview(a).cast("B") if a.size else memoryview(b"")


def _read_checked(path: Path, name: str, expected: Expected, secret: bytes) -> dict[str, np.ndarray]:
    """Headers checked, then the arrays filled in place, then the MAC compared; DataError otherwise."""
    with open_file(path) as f:  # a regular file only (not a FIFO or a device behind a link)
        cap = _max_bytes(expected)
        if os.fstat(f.fileno()).st_size > cap:
            raise DataError(f"larger than the {cap:,} bytes its arrays can take")
        with zipfile.ZipFile(f) as zf:
            members = _headers(zf)
            _check_headers({k: (m[1], m[2]) for k, m in members.items()}, expected)
            arrays = {k: _read_array(zf, *m) for k, m in members.items()}
    mac = arrays.pop(_MAC).tobytes()
    if not hmac.compare_digest(mac, _mac(secret, name, arrays).tobytes()):
        raise DataError("its content was not written by this user's cnnsweep (HMAC mismatch)")
    _check_labels(arrays, expected)
    return arrays


def _max_bytes(expected: Expected) -> int:
    """The largest file the expected arrays can make: the decode cap when the side is open."""
    n = sum(expected.counts.values())
    if expected.side is None:
        pixels = MAX_DECODED_BYTES
    else:
        pixels = n * expected.side ** 2 * max(expected.channels)
    return pixels + 8 * n + _SLACK_BYTES  # + int64 labels


def _headers(zf: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype, int]]:
    """member name -> (zip entry, shape, dtype, data offset), from the headers only."""
    out = {}
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in out:
            raise DataError(f"unexpected or repeated member {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"member {info.filename!r} is compressed (cnnsweep writes stored members)")
        with zf.open(info) as m:
            version = np.lib.format.read_magic(m)
            if version not in ((1, 0), (2, 0)):
                raise DataError(f"member {info.filename!r} has .npy version {version}")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(m)  # numpy bounds the header at 10,000 bytes
            offset = m.tell()
        if fortran or dtype.hasobject or any(d < 0 for d in shape):
            raise DataError(f"member {info.filename!r} is not a plain C-ordered array")
        if offset + math.prod(shape) * dtype.itemsize != info.file_size:  # Python ints: no overflow
            raise DataError(f"member {info.filename!r} holds {info.file_size:,} bytes, not what its header says")
        out[key] = (info, shape, dtype, offset)
    return out


def _check_headers(found: dict[str, tuple[tuple[int, ...], np.dtype]], expected: Expected) -> None:
    """Names, dtypes and shapes as the caller expects them, and the total under the decode cap."""
    want = {f"{s}_{kind}" for s in expected.counts for kind in ("images", "labels")} | {_MAC}
    if set(found) != want:
        raise DataError(f"holds {sorted(found)}, expected {sorted(want)}")
    if found[_MAC] != ((32,), np.dtype(np.uint8)):
        raise DataError(f"its {_MAC!r} member is not 32 bytes")
    if any(len(found[f"{s}_images"][0]) != 4 for s in expected.counts):
        raise DataError("its images are not N x side x side x channels arrays")
    pixels = {found[f"{s}_images"][0][1:] for s in expected.counts}  # (side, side, channels) per split
    side, width, channels = next(iter(pixels))
    if len(pixels) != 1 or side != width or channels not in expected.channels or \
            expected.side not in (None, side):
        raise DataError(f"image shapes {sorted(pixels)} are not the expected side x side x "
                        f"{'|'.join(map(str, expected.channels))}")
    for s, n in expected.counts.items():
        if found[f"{s}_images"] != ((n, side, side, channels), np.dtype(np.uint8)):
            raise DataError(f"{s}_images is not {n} uint8 images")
        if found[f"{s}_labels"] != ((n,), np.dtype(np.int64)):
            raise DataError(f"{s}_labels is not {n} int64 labels")
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in found.values())
    if total > MAX_DECODED_BYTES:
        raise DataError(f"its arrays need {total:,} bytes, over the {MAX_DECODED_BYTES:,}-byte limit")


def _read_array(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype,
                offset: int) -> np.ndarray:
    """The member's data, read into an array of the checked shape (zipfile checks the CRC at the end)."""
    out = np.empty(shape, dtype=dtype)
    view = _bytes(out)
    with zf.open(info) as m:
        m.seek(offset)
        for start in range(0, len(view), _READ_BYTES):
            part = view[start:start + _READ_BYTES]
            if m.readinto(part) != len(part):
                raise DataError(f"member {info.filename!r} is truncated")
        if m.read(1):
            raise DataError(f"member {info.filename!r} has trailing data")
    return out


def _check_labels(arrays: dict[str, np.ndarray], expected: Expected) -> None:
    for s in expected.counts:
        y = arrays[f"{s}_labels"]
        if y.size and (int(y.min()) < 0 or int(y.max()) >= expected.num_classes):
            raise DataError(f"{s}_labels are not all class indices below {expected.num_classes}")
