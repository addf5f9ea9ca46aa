"""Model registry, timm style: factories register under a name, `create_model` looks them up.

Two kinds of entries:
- exact names (`cnn`), called as `factory(num_classes, in_channels, image_size, **cfg)`;
- prefix families ending in "/" (`timm/`), called with the rest of the name as `model_name`,
  so `timm/resnet18` reaches the timm factory with `model_name="resnet18"`.

Pure torch: no ray here (the core must import without it).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch.nn as nn

from cnnsweep.config import MAX_IMAGE_SIDE
from cnnsweep.data.gtsrb_pickle import MAX_NUM_CLASSES
from cnnsweep.registry import MODELS, Entry, RegistryError

Factory = Callable[..., nn.Module]


class ModelError(ValueError):
    """A model problem phrased for a person (unknown name, missing weights, impossible head)."""


def register_model(name: str, *, check: Optional[Callable[..., Optional[str]]] = None
                   ) -> Callable[[Factory], Factory]:
    """Decorator: `@register_model("cnn")` or, for a family, `@register_model("timm/")`.

    The family's config section (cnnsweep.config.MODEL_FAMILIES, same key) owns its keyword arguments:
    `build.model_args` passes the section's own fields; every factory also takes `pretrained` and
    `weights`. `check`
    (`check(pretrained=, weights=, **family_args) -> problem or None`) answers, without building the
    model, whether it can run here (availability.py; sweeps ask it before the first trial).
    """
    def wrap(fn: Factory) -> Factory:
        try:
            return MODELS.register(name, check=check)(fn)
        except RegistryError as e:
            raise ModelError(str(e)) from None

    return wrap


def list_models() -> list[str]:
    """Registered names; a family shows as `timm/<name>`."""
    return MODELS.names()


def model_entry(name: str) -> tuple[Entry, dict[str, Any]]:
    """(registry entry, extra factory arguments such as timm's `model_name`)."""
    try:
        return MODELS.entry(name)
    except RegistryError as e:
        raise ModelError(str(e)) from None


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 **cfg: Any) -> nn.Module:
    """Build a registered model. `cfg` holds the family's own keyword arguments."""
    if not 1 <= num_classes <= MAX_NUM_CLASSES:  # sizes the output layer: bounded like a dataset's labels
        raise ModelError(f"num_classes must be 1..{MAX_NUM_CLASSES:,}, got {num_classes}")
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}")
    if not 1 <= image_size <= MAX_IMAGE_SIDE:  # sizes feature maps (and a flatten head)
        raise ModelError(f"image_size must be 1..{MAX_IMAGE_SIDE} px, got {image_size}")
    entry, extra = model_entry(name)
    return entry.obj(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                     **extra, **cfg)
