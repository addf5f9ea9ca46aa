"""Atomic file and folder writes: a kill at any moment leaves the old version or the new one.

A plain `open(path, "w").write(...)` truncates first, so a crash (kill -9, OOM, power loss) in the
middle leaves a half-written file that later fails to parse. Every writer here works the same way:

1. write to a unique temporary name in the *same folder* (same filesystem, so the rename is atomic;
   unique, so two writers never share a temp file),
2. flush and `fsync` the file (its bytes are on disk before its name is),
3. `os.replace` it over the target (atomic on POSIX: readers see the old file or the new one),
4. `fsync` the folder (the rename itself survives a power loss).

If anything fails before step 3 the temp file is removed and the target is untouched.

    atomic_write_text(run / "config.yaml", yaml.safe_dump(d))
    atomic_write_json(sweep / "leaderboard.json", rows, indent=2)
    atomic_write(ckpt / "checkpoint.pt", lambda f: torch.save(state, f))
    with atomic_path(out / "model.onnx") as tmp:  # write by name, check it, then swap it in
        save(tmp); verify(tmp)
    with atomic_dir(sweep / "best") as tmp:   # build the folder, then swap it in whole
        shutil.copytree(src, tmp, dirs_exist_ok=True)

Pure standard library: usable from every layer (no torch, no ray).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

_OLD_DIR_MARK = ".old-"  # <folder>.old-XXXX: the previous copy during a non-atomic folder swap


def fsync_dir(path: str | Path) -> None:
    """fsync a folder, so renames and new entries in it are on disk. No-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on folders
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(f)` on a temp file next to `path`, then atomically rename it to `path`.

    `write` gets a binary file object (e.g. `lambda f: torch.save(state, f)`). Creates the parent
    folder. Returns `path`. On any exception (or KeyboardInterrupt) the target is left as it was.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace `path` with `data`."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace `path` with `text` (encoded with `encoding`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """Atomically replace `path` with `json.dumps(obj, **dumps_kwargs)` plus a newline. The JSON is
    built before the file is touched, so an unserializable `obj` leaves the old file."""
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp file name next to `path`, for writers that need a name rather than a file
    object (onnx, ONNX Runtime, a check that reopens the file). When the block ends without an
    exception the temp file replaces `path` (fsync, `os.replace`, fsync of the folder); on an exception
    it is removed and `path` is left as it was. The suffix is kept so tools that look at it still work."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=f".tmp{p.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(p.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False  # not Linux/glibc >= 2.28
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: this filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def restore_dir(final: str | Path) -> None:
    """Finish an interrupted non-atomic `replace_dir`: if `final` is missing but its previous copy
    (`<final>.old-*`) is there, move the copy back. Cheap; readers may call it before opening `final`."""
    f = Path(final)
    olds = sorted(f.parent.glob(f".{f.name}{_OLD_DIR_MARK}*"), key=lambda p: p.stat().st_mtime)
    if not f.exists() and olds:
        os.rename(olds.pop(), f)
        fsync_dir(f.parent)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def replace_dir(new: str | Path, final: str | Path) -> Path:
    """Move the fully written folder `new` to `final`, replacing any folder there, so that a kill
    leaves either the old or the new folder at `final`.

    `new` must be on the same filesystem as `final` (make it with `atomic_dir`, or next to `final`).
    On Linux the two are swapped atomically (renameat2 RENAME_EXCHANGE) and the old copy deleted.
    Elsewhere the old folder is first renamed to `.<name>.old-*`: a kill between the two renames
    leaves `final` missing for a moment, which `restore_dir(final)` (run at the start of every
    `replace_dir`) repairs by putting the old copy back.
    """
    new, final = Path(new), Path(final)
    restore_dir(final)
    if not final.exists():
        os.rename(new, final)
    elif _exchange(new, final):
        shutil.rmtree(new)  # `new` now holds the old content
    else:
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}{_OLD_DIR_MARK}"))
        os.replace(final, old)  # a folder may replace an empty folder
        os.rename(new, final)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder next to `final`; when the block ends without an exception, it
    replaces `final` whole (see `replace_dir`). On an exception the temp folder is deleted and
    `final` is untouched. Files written inside need no fsync of their own: it is done here."""
    f = Path(final)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=f.parent, prefix=f".{f.name}.", suffix=".partial"))
    try:
        yield tmp
        _fsync_tree(tmp)
        replace_dir(tmp, f)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
