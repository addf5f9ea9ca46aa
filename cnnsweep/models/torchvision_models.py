"""`torchvision/<arch>`: torchvision's classification models, for transfer learning.

Built with `torchvision.models.get_model(arch, weights=None, num_classes=1000)`, so the ImageNet head
exists when a weights file is loaded (strictly: every tensor, no extra, same shapes). Then the input conv
is adapted to the data's channels (timm's `adapt_input_conv`: summed for 1 channel, repeated for more)
and the head is replaced for the dataset's classes (kept when it already has that many).

Weights, with `pretrained`: `model.weights` (a local state_dict file, read weights-only), else the file
torchvision itself would download, if already in torch hub's cache (`$TORCH_HOME/hub/checkpoints`).
Nothing is downloaded here: a missing file is a ModelError saying where to put one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from cnnsweep.models.freeze import classifier_module, zero_init_classifier
from cnnsweep.models.registry import ModelError, register_model
from cnnsweep.models.weights import load_state_dict_file

log = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000  # the head of every torchvision classification weights file
HEAD_INIT_STD = 0.01  # torchvision's init of squeezenet's 1x1 conv head (a ReLU follows: keep it small)


def classification_models() -> list[str]:
    import torchvision.models as tvm

    return tvm.list_models(module=tvm)  # the classification builders only (no detection, video, ...)


def cached_weights(arch: str) -> Optional[Path]:
    """The file torchvision's default weights of `arch` would download, if torch hub's cache has it."""
    import torchvision.models as tvm

    try:
        url = tvm.get_model_weights(arch).DEFAULT.url
    except (ValueError, AttributeError, KeyError):  # no published weights for this builder
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def _missing_weights(arch: str) -> str:
    return (f"model.pretrained=true for torchvision/{arch}, but no weights file: set model.weights to a local "
            f"state_dict file (.pth), or put torchvision's file into {Path(torch.hub.get_dir()) / 'checkpoints'}, "
            "or set model.pretrained=false")


def check_torchvision(model_name: str, pretrained: bool = False, weights: Optional[str] = None) -> Optional[str]:
    """Availability (see availability.py): a classification builder; for pretrained, a file to load."""
    if model_name not in classification_models():
        return (f"unknown torchvision model {model_name!r}: check the spelling against "
                "torchvision.models.list_models(module=torchvision.models)")
    if pretrained and not weights and cached_weights(model_name) is None:
        return _missing_weights(model_name)
    return None


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def _load_strict(model: nn.Module, path: str | Path, arch: str) -> int:
    sd = load_state_dict_file(path)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:  # missing / unexpected keys, or shapes of another architecture
        detail = " ".join(line.strip() for line in str(err).splitlines() if line.strip())[:400]
        raise ModelError(f"model.weights: {path} does not match torchvision/{arch} (weights for another "
                         f"architecture?): {detail}") from None
    return len(sd)


def adapt_stem(model: nn.Module, in_channels: int, *, loaded: bool) -> Optional[str]:
    """Rebuild the first conv for `in_channels`; loaded weights are adapted (timm's adapt_input_conv),
    fresh ones keep the new conv's own init. Returns the conv's name when it changed."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None or conv.in_channels == in_channels:
        return None
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    if loaded:
        from timm.models import adapt_input_conv

        with torch.no_grad():
            new.weight.copy_(adapt_input_conv(in_channels, conv.weight))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    _set_module(model, name, new)
    return name


def replace_head(model: nn.Module, num_classes: int) -> Optional[str]:
    """A fresh classifier for `num_classes` (Linear, or squeezenet's 1x1 conv); None when already that size."""
    name, head = classifier_module(model)
    if isinstance(head, nn.Linear):
        if head.out_features == num_classes:
            return None
        new: nn.Module = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    elif isinstance(head, nn.Conv2d):
        if head.out_channels == num_classes:
            return None
        new = nn.Conv2d(head.in_channels, num_classes, head.kernel_size, head.stride, head.padding,
                        bias=head.bias is not None)
        nn.init.normal_(new.weight, 0.0, HEAD_INIT_STD)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    else:
        raise ModelError(f"{type(model).__name__}: cannot replace a classifier of type {type(head).__name__}")
    _set_module(model, name, new)
    return name


def _build(arch: str, image_size: int) -> nn.Module:
    import torchvision.models as tvm

    try:  # ViTs fix their position-embedding grid at construction, so they need the image size
        return tvm.get_model(arch, weights=None, num_classes=IMAGENET_CLASSES, image_size=image_size)
    except TypeError as err:
        if "image_size" not in str(err):
            raise
    return tvm.get_model(arch, weights=None, num_classes=IMAGENET_CLASSES)  # CNNs take any size


@register_model("torchvision/", check=check_torchvision)
def create_torchvision_model(model_name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                             pretrained: bool = False, weights: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """A torchvision classification model; with `pretrained` (or a `weights` file), its weights loaded."""
    if kwargs:
        raise ModelError(f"torchvision/{model_name}: unexpected arguments {sorted(kwargs)}")
    if model_name not in classification_models():
        raise ModelError(f"unknown torchvision model {model_name!r}; see "
                         "torchvision.models.list_models(module=torchvision.models)")
    model = _build(model_name, image_size)
    path = weights or (cached_weights(model_name) if pretrained else None)
    if pretrained and path is None:
        raise ModelError(_missing_weights(model_name))
    loaded = _load_strict(model, path, model_name) if path else 0
    stem = adapt_stem(model, in_channels, loaded=bool(path))
    head = replace_head(model, num_classes)
    if path and head:
        zero_init_classifier(model)
    if path:
        log.info("torchvision/%s: loaded %d tensors from %s; head re-initialised: %s; input conv adapted: %s",
                 model_name, loaded, path, head or "no", stem or "no")
    return model
