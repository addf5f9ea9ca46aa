"""On-disk cache of decoded datasets (.npz of uint8 arrays), so the second load skips decoding.

The key hashes everything the decoded pixels depend on: the format, the resolved root, every file's
relative path, size and modification time, and the options (e.g. the resize side). A changed, added or
removed file therefore gives a new key instead of stale pixels. Files are read with
allow_pickle=False: a cache file can only ever hold plain arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

log = logging.getLogger(__name__)
_VERSION = 1  # bump when the decoding itself changes


def fingerprint(root: Path, files: Iterable[Path], **options: Any) -> str:
    """A hex key for the decoded content of `files` under `root` with `options`."""
    h = hashlib.sha256(json.dumps({"v": _VERSION, "root": str(root.resolve()), **options},
                                  sort_keys=True, default=str).encode())
    for f in files:
        st = f.stat()
        # surrogateescape: an undecodable file name hashes as its own bytes instead of raising
        line = f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def cache_dirs(root: Path, cache_dir: str | Path | None) -> list[Path]:
    """Where to look for a cache, in order: data.cache_dir or <root>/.cnnsweep_cache, then the user cache
    (the first may be read-only, e.g. a shared data folder)."""
    primary = Path(cache_dir).expanduser() if cache_dir else root / ".cnnsweep_cache"
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnsweep"
    return [primary] if primary == user else [primary, user]


def load_cached(dirs: list[Path], name: str) -> dict[str, np.ndarray] | None:
    """The arrays of the first readable `name` in `dirs`, or None (a corrupt file is ignored)."""
    for d in dirs:
        path = d / name
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            log.warning("ignoring unreadable cache %s (%s)", path, err)
    return None


def save_cached(dirs: list[Path], name: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write `name` into the first writable dir; never fails the load (returns None instead)."""
    for d in dirs:
        if not _marked_writable(d):
            log.info("cache dir %s is marked read-only; trying the next", d)
            continue
        try:
            d.mkdir(parents=True, exist_ok=True)
            return _write_atomic(d / name, arrays)
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


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """tmp file + rename: a reader never sees a half-written cache, even with concurrent loads."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loading is then a plain read (~0.1 s per 100 MB)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left behind when writing failed
    return path
