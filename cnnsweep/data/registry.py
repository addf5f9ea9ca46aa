"""Dataset registry: a format name -> a loader `fn(root, **options) -> ImageDataset`
(the `DATASETS` instance of the generic `cnnsweep.registry.Registry`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from ..registry import DATASETS, RegistryError
from .dataset import ImageDataset
from cnnsweep.errors import DataError

Loader = Callable[..., ImageDataset]


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make `fn(root, **options)` loadable as `data.name: <name>` (no other edit needed)."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def loader_options(name: str) -> set[str]:
    """Keyword options a format's loader accepts (so load_dataset passes only those)."""
    params = inspect.signature(_get(name)).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_dataset(name: str, root: str | Path | None = None, **options: Any) -> ImageDataset:
    """The raw dataset of format `name` at `root`: no validation split, no subsetting."""
    fn = _get(name)
    unknown = set(options) - loader_options(name)
    if unknown:
        raise DataError(f"dataset {name!r} has no option(s) {sorted(unknown)}; "
                        f"it accepts {sorted(loader_options(name))}")
    return fn(Path(root).expanduser() if root is not None else None, **options)


def _get(name: str) -> Loader:
    try:
        return DATASETS.get(name)
    except RegistryError as e:
        raise DataError(str(e)) from None


def require_root(name: str, root: Path | None, hint: str) -> Path:
    """The dataset folder, or a DataError saying how to set it."""
    if root is None:
        raise DataError(f"data.root is not set: the {name!r} dataset needs a folder ({hint})")
    if not root.is_dir():
        raise DataError(f"data.root {str(root)!r} is not a folder ({hint})")
    return root
