"""Output locations: local paths or URIs (s3://, gs://) through pyarrow's filesystems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnsweep.atomic import atomic_dir
from cnnsweep.config import ConfigError, apply_overrides


def is_uri(path: str) -> bool:
    return "://" in str(path)


def join_path(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def path_exists(path: str) -> bool:
    import pyarrow.fs

    try:
        fs, p = pyarrow.fs.FileSystem.from_uri(path)
        return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound
    except (OSError, ValueError) as err:  # unknown scheme, no credentials, unreachable bucket
        raise ConfigError(f"cannot reach {path}: {err}") from None


def copy_tree(src: str, dst: str) -> None:
    """Copy a folder between local paths and/or URIs (the best checkpoint, reports to s3://...).

    A local `dst` is replaced whole: the copy is built in a temp folder beside it and swapped in, so
    a kill or a full disk mid-copy leaves the previous folder (e.g. the last sweep's `best/`), never a
    half one. Object storage has no folder rename: a URI `dst` is overwritten file by file."""
    import pyarrow.fs

    if is_uri(dst):
        pyarrow.fs.copy_files(src, dst)
        return
    with atomic_dir(dst) as tmp:
        pyarrow.fs.copy_files(src, str(tmp))


def resolve_output(output: str) -> str:
    """Ray wants an absolute path or a URI for storage."""
    return output if is_uri(output) else str(Path(output).expanduser().resolve())


def absolute_data_root(raw: dict[str, Any]) -> dict[str, Any]:
    """Trial actors run in their own folders: make a relative, existing data.root absolute."""
    root = (raw.get("data") or {}).get("root")
    if root and not is_uri(root) and Path(root).exists():
        raw = apply_overrides(raw, {"data.root": str(Path(root).resolve())})
    return raw
