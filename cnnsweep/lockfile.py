"""An exclusive lock on an output folder, held for a run's or a sweep's whole life.

Two `cnnsweep tune -o X` (or `train -o X`) started together would both pass "is the folder fresh?"
and then write the same Tune experiment and checkpoints (check-then-act). The lock closes that gap:
whoever holds `<output>/.lock` checks and writes; the second process gets a one-line error at once.

`fcntl.flock` locks belong to the open file, so the kernel drops the lock when the holder exits in
any way (kill -9 included): no stale lock to clean up, and the lock file itself is never deleted
(deleting it would let a third process lock a new file while the second still waits on the old one).
The descriptor is close-on-exec (Python's default), so the Ray processes the driver starts do not
inherit, and keep, the lock. flock works across hosts on NFSv4 (Linux emulates it with POSIX locks);
on other shared filesystems it may only exclude processes on the same host.

Standard library + ConfigError only: usable from every layer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path
from typing import Iterator

from cnnsweep.config import ConfigError

LOCK_NAME = ".lock"


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it ('pid 123 on host'); '' when unreadable."""
    with contextlib.suppress(OSError):
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return ""


def _open_lock_file(folder: Path) -> int:
    """Open (create) `folder/.lock` for writing, refusing anything but a plain file of its own.

    The holder truncates and rewrites the lock file, so a `.lock` planted as a symlink or a hard link
    to another file would have that file overwritten: O_NOFOLLOW refuses the symlink (ELOOP) and the
    fstat check refuses a hard link (more than one name) or a FIFO/device.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ConfigError(f"{folder / LOCK_NAME} is a symlink: refusing to use it as the lock file; "
                              "remove it") from None
        raise ConfigError(f"{folder}: cannot create the output folder's lock file ({err.strerror or err})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise ConfigError(f"{folder / LOCK_NAME} is not a plain file of its own (a hard link, FIFO or device): "
                          "refusing to use it as the lock file; remove it")
    return fd


@contextlib.contextmanager
def hold_output_lock(folder: str | Path) -> Iterator[Path]:
    """Create `folder` if needed and hold an exclusive lock on `folder/.lock` until the block ends.

    Raises ConfigError (exit 2 in the CLI) at once, without waiting, when another process holds it.
    """
    folder = Path(folder)
    fd = _open_lock_file(folder)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            raise ConfigError(f"{folder} is in use by another cnnsweep process{f' ({who})' if who else ''}: "
                              "wait for it to finish, or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield folder / LOCK_NAME
    finally:
        os.close(fd)  # releases the lock


def folder_entries(folder: str | Path) -> list[str]:
    """The names in `folder` other than the lock file (sorted); [] when it does not exist."""
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted(e.name for e in p.iterdir() if e.name != LOCK_NAME)
