"""Model registry, timm style: factories register under a name, `create_model` looks them up.

Two kinds of entries:
- exact names (`cnn`), called as `factory(num_classes, in_channels, image_size, **cfg)`;
- prefix families ending in "/" (`timm/`), called with the rest of the name as `model_name`,
  so `timm/resnet18` reaches the timm factory with `model_name="resnet18"`.

Pure torch: no ray here (the core must import without it).
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

Factory = Callable[..., nn.Module]

_REGISTRY: dict[str, Factory] = {}


class ModelError(ValueError):
    """A model problem phrased for a person (unknown name, missing weights, impossible head)."""


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator: `@register_model("cnn")` or, for a family of names, `@register_model("timm/")`."""

    def wrap(fn: Factory) -> Factory:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ModelError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Registered names; a family shows as `timm/<name>`."""
    return sorted(n + "<name>" if n.endswith("/") else n for n in _REGISTRY)


def _lookup(name: str) -> tuple[Factory, dict[str, Any]]:
    if name in _REGISTRY:
        return _REGISTRY[name], {}
    for prefix, fn in _REGISTRY.items():
        if prefix.endswith("/") and name.startswith(prefix) and len(name) > len(prefix):
            return fn, {"model_name": name[len(prefix):]}
    raise ModelError(f"unknown model {name!r}; registered: {', '.join(list_models())}")


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 **cfg: Any) -> nn.Module:
    """Build a registered model. `cfg` holds the family's own keyword arguments."""
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}")
    factory, extra = _lookup(name)
    return factory(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                   **extra, **cfg)
