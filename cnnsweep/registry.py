"""One generic registry (timm's `register_model` / `create_model` idea) for every named choice a config
makes: dataset formats, model families, class-balancing methods, poolings.

    @DATASETS.register("gtsrb_pickle")          # short entries where the thing is defined
    def load_gtsrb_pickle(root, ...): ...
    DATASETS.get("gtsrb_pickle") -> (loader, {})
    MODELS.get("timm/resnet18") -> (timm factory, {"model_name": "resnet18"})   # a prefix family

The registries live here, at the bottom of the package, so that `config.py` validates names against
them without importing the packages that fill them (which import config). Each registry knows the
module whose import registers the shipped entries (`builtins`) and imports it on first use, so a name
check in config always sees them. Pure Python.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown or doubly registered name; each package re-raises it as its own error type."""


@dataclass
class Entry(Generic[T]):
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a model family's config fields


class Registry(Generic[T]):
    """Names -> objects. A name ending in "/" registers a family: `timm/` answers `timm/<anything>`."""

    def __init__(self, kind: str, *, builtins: Optional[str] = None):
        self.kind, self.builtins = kind, builtins
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: `@REG.register("name", key=value)`; `meta` is kept with the entry."""

        def wrap(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old.obj is not obj:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(obj, meta)
            return obj

        return wrap

    def _load_builtins(self) -> None:
        if self.builtins:
            importlib.import_module(self.builtins)  # registers the shipped entries (idempotent)

    def names(self) -> list[str]:
        """Registered names, sorted; a family shows as `prefix/<name>`."""
        self._load_builtins()
        return sorted(n + "<name>" if n.endswith("/") else n for n in self._entries)

    def entry(self, name: str) -> tuple[Entry[T], dict[str, Any]]:
        """(entry, extra keyword arguments); a family passes the rest of the name as `model_name`."""
        self._load_builtins()
        if name in self._entries and not name.endswith("/"):  # a bare `timm/` names no model
            return self._entries[name], {}
        for prefix, e in self._entries.items():
            if prefix.endswith("/") and name.startswith(prefix) and len(name) > len(prefix):
                return e, {"model_name": name[len(prefix):]}
        raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")

    def get(self, name: str) -> T:
        return self.entry(name)[0].obj

    def check(self, name: str) -> str:
        """`name` if registered (for validators), else RegistryError naming the choices."""
        self.entry(name)
        return name

    def __contains__(self, name: str) -> bool:
        try:
            self.entry(name)
        except RegistryError:
            return False
        return True


DATASETS: Registry[Callable[..., Any]] = Registry("dataset", builtins="cnnsweep.data")
MODELS: Registry[Callable[..., Any]] = Registry("model", builtins="cnnsweep.models")
BALANCE_METHODS: Registry[Callable[..., Any]] = Registry("balance method", builtins="cnnsweep.data.balance")
POOLINGS: Registry[Callable[..., Any]] = Registry("pooling", builtins="cnnsweep.models.cnn")
