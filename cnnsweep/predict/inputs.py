"""What INPUTS means, read a chunk at a time so memory stays bounded for any number of files.

- `DATASET:ROOT:SPLIT`, e.g. `gtsrb_pickle:../shared/data/gtsrb:valid`: a split (train, valid, test) of
  a registered dataset format, loaded as training loads it (so `valid` is the same split); ids are
  `<split>/<index>` and the true labels are known.
- a folder: every image file under it (recursive, sorted); ids are paths relative to the folder.
- image files: ids are the paths as given.
- a `.txt` file: one image path per line (relative to the list's folder; `#` starts a comment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from cnnsweep.data.decode import open_file
from cnnsweep.errors import DataError
from cnnsweep.errors import PredictError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".pnm")  # what serving decodes
SPLITS = ("train", "valid", "test")
MAX_FILE_BYTES = 128 << 20  # one encoded image file, bytes: a 4096 x 4096 16-bit RGB PPM is 96 MiB
MAX_CHUNK_BYTES = 256 << 20  # encoded bytes in one chunk (what one Ray task carries), bytes
MAX_LIST_BYTES = 16 << 20  # one .txt list, bytes: about 200,000 paths of 80 characters
MAX_LIST_ENTRIES = 1_000_000  # paths in one .txt list: each becomes a Path object (~200 bytes) up front


@dataclass
class Chunk:
    """A slice of the inputs, self-contained (it can travel to a Ray task)."""

    ids: list[str]
    encoded: Optional[list[bytes]] = None  # image files, still encoded (decoded where they are predicted)
    images: Optional[np.ndarray] = None  # dataset splits: uint8 N x C x H x W
    labels: Optional[np.ndarray] = None  # true labels, when known
    read_errors: dict[int, str] = field(default_factory=dict)  # position in the chunk -> why it was unreadable


@dataclass
class InputSet:
    ids: list[str]
    paths: Optional[list[Path]] = None
    images: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def chunks(self, size: int) -> Iterator[Chunk]:
        if self.paths is not None:
            yield from self._file_chunks(size)
            return
        for i in range(0, len(self), size):
            labels = None if self.labels is None else self.labels[i:i + size]
            yield Chunk(self.ids[i:i + size], images=self.images[i:i + size], labels=labels)

    def _file_chunks(self, size: int) -> Iterator[Chunk]:
        """Chunks of at most `size` files and MAX_CHUNK_BYTES encoded bytes, so that one chunk fits in
        memory and in one Ray task whatever the files hold (one file may be read ahead of its chunk)."""
        start, encoded, errors, total = 0, [], {}, 0
        for i, path in enumerate(self.paths):
            data, error = _read_capped(path)
            if encoded and (len(encoded) >= size or total + len(data) > MAX_CHUNK_BYTES):
                yield self._file_chunk(start, i, encoded, errors)
                start, encoded, errors, total = i, [], {}, 0
            if error is not None:
                errors[len(encoded)] = error
            encoded.append(data)
            total += len(data)
        if encoded:
            yield self._file_chunk(start, len(self), encoded, errors)

    def _file_chunk(self, start: int, end: int, encoded: list[bytes], errors: dict[int, str]) -> Chunk:
        labels = None if self.labels is None else self.labels[start:end]
        return Chunk(self.ids[start:end], encoded=encoded, labels=labels, read_errors=errors)


def _read_capped(path: Path) -> tuple[bytes, Optional[str]]:
    """A file's bytes, or b"" and why it was not read (the caller decides whether that ends the run or
    skips the file). Only regular files, and never more than MAX_FILE_BYTES + 1 bytes."""
    limit = MAX_FILE_BYTES
    too_big = f"larger than the {limit:,}-byte limit for one image file"
    try:
        with open_file(path) as f:
            if os.fstat(f.fileno()).st_size > limit:
                return b"", too_big
            data = f.read(limit + 1)  # not the declared size: a file can grow, and /proc files say 0
    except DataError as err:
        return b"", str(err)
    except OSError as err:
        return b"", f"cannot read ({err.strerror})"
    return (b"", too_big) if len(data) > limit else (data, None)


def parse_split_spec(spec: str) -> Optional[tuple[str, str, str]]:
    """`NAME:ROOT:SPLIT` with a registered NAME and a known SPLIT -> the three parts; else None."""
    from cnnsweep.registry import DATASETS

    name, _, rest = spec.partition(":")
    root, _, split = rest.rpartition(":")
    if not root or split not in SPLITS or name not in DATASETS:
        return None
    return name, root, split


def load_split(name: str, root: str, split: str) -> InputSet:
    from cnnsweep.config import DataConfig
    from cnnsweep.data import DataError, load_dataset

    try:
        dataset = load_dataset(DataConfig(name=name, root=root))
    except DataError as err:
        raise PredictError(str(err)) from None
    part = getattr(dataset, split)
    if part is None:
        raise PredictError(f"{name}:{root} has no {split} split ({'; '.join(dataset.notes) or 'not in the files'})")
    ids = [f"{split}/{i}" for i in range(len(part.labels))]
    return InputSet(ids, images=part.images.numpy(), labels=part.labels.numpy(), notes=list(dataset.notes))


def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(id, real path) of every image file under folder. A link out of the folder is refused; the real
    path is what is read later, so a link changed after this check cannot redirect the read."""
    real_folder = folder.resolve()
    pairs = []
    for p in sorted(folder.rglob("*")):  # rglob does not descend into linked folders
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        real = p.resolve()
        if not real.is_relative_to(real_folder):
            raise PredictError(f"{p}: a link to {real}, outside {folder}: not read (give the file itself as an input)")
        pairs.append((str(p.relative_to(folder)), real))
    return pairs


def _read_list(path: Path) -> str:
    """The text of a .txt list: a regular file of at most MAX_LIST_BYTES of UTF-8 (a BOM is skipped)."""
    too_big = f"{path}: larger than the {MAX_LIST_BYTES:,}-byte limit for a .txt list"
    try:
        with open_file(path) as f:
            if os.fstat(f.fileno()).st_size > MAX_LIST_BYTES:
                raise PredictError(too_big)
            data = f.read(MAX_LIST_BYTES + 1)  # not the declared size: a file can grow while read
    except DataError as err:
        raise PredictError(f"{path}: {err}") from None
    except OSError as err:
        raise PredictError(f"{path}: cannot read ({err.strerror})") from None
    if len(data) > MAX_LIST_BYTES:
        raise PredictError(too_big)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise PredictError(f"{path} line {line}: not UTF-8 text (byte {data[err.start:err.start + 1]!r} "
                           f"at offset {err.start}); save the list as UTF-8") from None


def _list_file(path: Path) -> list[Path]:
    """One image path per line, relative to the list's folder; `#` starts a comment. Lines are split on
    \\n only (\\r is stripped), so the line numbers in errors are the ones an editor shows."""
    out = []
    for number, line in enumerate(_read_list(path).split("\n"), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not entry.isprintable():  # control characters would reach the terminal in later messages
            raise PredictError(f"{path} line {number}: {ascii(entry)} is not a printable path")
        if len(out) == MAX_LIST_ENTRIES:
            raise PredictError(f"{path} line {number}: more than {MAX_LIST_ENTRIES:,} paths in one list")
        out.append(Path(entry) if Path(entry).is_absolute() else path.parent / entry)
    return out


def _expand(spec: str) -> list[tuple[str, Path]]:
    """One path argument -> (id, file) pairs."""
    p = Path(spec)
    if p.is_dir():
        pairs = _folder_files(p)
        if not pairs:
            raise PredictError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return pairs
    if p.is_file() and p.suffix.lower() == ".txt":
        return [(str(f), f) for f in _list_file(p)]
    if p.is_file():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise PredictError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)}), a .txt list or a folder")
        return [(spec, p)]
    raise PredictError(f"{spec}: no such file or folder (nor a dataset split NAME:ROOT:{'|'.join(SPLITS)})")


def resolve_inputs(specs: Sequence[str]) -> InputSet:
    """INPUTS of `cnnsweep predict` -> one InputSet (a split alone, or any mix of paths)."""
    if not specs:
        raise PredictError("no inputs: give an image folder, image files, a .txt list or NAME:ROOT:SPLIT")
    splits = [parse_split_spec(s) for s in specs]
    if any(splits):
        if len(specs) != 1:
            raise PredictError("a dataset split NAME:ROOT:SPLIT must be the only input")
        return load_split(*splits[0])
    pairs = [pair for spec in specs for pair in _expand(spec)]
    missing = [str(f) for _, f in pairs if not f.is_file()]
    if missing:
        raise PredictError(f"{missing[0]}: no such image file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return InputSet([i for i, _ in pairs], paths=[f for _, f in pairs])
