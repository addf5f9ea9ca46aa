"""One generic registry (timm's `register_model` / `create_model` idea) for every named choice a config
makes: dataset formats, model families, class-balancing methods, poolings.

    @DATASETS.register("gtsrb_pickle")          # short entries where the thing is defined
    def load_gtsrb_pickle(root, ...): ...
    DATASETS.get("gtsrb_pickle") -> (loader, {})
    MODELS.get("timm/resnet18") -> (timm factory, {"model_name": "resnet18"})   # a prefix family

The registries live here, at the bottom of the package, so that `config.py` validates names against
them without importing the packages that fill them (torch; and they import config). So each registry
declares the names of its shipped entries (`shipped`): a name check needs no import, and the package
that defines them registers the objects when it is imported (tests/test_registry.py checks that the two
agree). Names registered by user code before validating are accepted too. Pure Python.
"""

from __future__ import annotations

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

    def __init__(self, kind: str, *, shipped: tuple[str, ...] = (), package: str = ""):
        self.kind, self.shipped, self.package = kind, tuple(shipped), package  # package registers `shipped`
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

    def names(self) -> list[str]:
        """Shipped and registered names, sorted; a family shows as `prefix/<name>`."""
        return sorted({n + "<name>" if n.endswith("/") else n for n in (*self.shipped, *self._entries)})

    def entry(self, name: str) -> tuple[Entry[T], dict[str, Any]]:
        """(entry, extra keyword arguments); a family passes the rest of the name as `model_name`."""
        key = match_name(name, self._entries)
        if key is None:
            if match_name(name, self.shipped) is not None:  # known, but its package was never imported
                raise RegistryError(f"{self.kind} {name!r} is registered by {self.package}: import it first")
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        extra = {"model_name": name[len(key):]} if key.endswith("/") else {}
        return self._entries[key], extra

    def get(self, name: str) -> T:
        return self.entry(name)[0].obj

    def check(self, name: str) -> str:
        """`name` if shipped or registered (for validators; imports nothing), else RegistryError."""
        if match_name(name, (*self.shipped, *self._entries)) is None:
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return name

    def __contains__(self, name: str) -> bool:
        try:
            self.check(name)
        except RegistryError:
            return False
        return True


def match_name(name: str, keys: Any) -> Optional[str]:
    """The key that answers `name`: itself, or a family prefix `p/` of `p/<something>` (a bare `p/` names
    nothing)."""
    if not isinstance(name, str):
        return None
    if name in keys and not name.endswith("/"):
        return name
    return next((k for k in keys if k.endswith("/") and name.startswith(k) and len(name) > len(k)), None)


DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset", shipped=("digits", "gtsrb", "gtsrb_pickle", "image_folder", "mnist"), package="cnnsweep.data")
MODELS: Registry[Callable[..., Any]] = Registry("model", shipped=("cnn", "timm/", "torchvision/"),
                                                  package="cnnsweep.models")
BALANCE_METHODS: Registry[Callable[..., Any]] = Registry(
    "balance method", shipped=("none", "class_weights", "sampler", "undersample", "oversample", "oversample_augment"),
    package="cnnsweep.data.balance")
POOLINGS: Registry[Callable[..., Any]] = Registry("pooling", shipped=("max", "avg", "strided", "none"),
                                                  package="cnnsweep.models.cnn")
