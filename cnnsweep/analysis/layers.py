"""Which layers the explanations look at: the convolutional stages of a model, found the same way for
the custom CNN and timm models.

Order of preference:
1. `model.feature_info` (the custom CNN sets it to `stages.i`; timm CNNs list their stages there);
2. otherwise the last `nn.Conv2d` at each output resolution (a "stage" = the layers between two
   downsamplings), found with one probe forward pass.
Only layers whose output is an N x C x H x W map count: a ViT's blocks output tokens and are skipped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnsweep.models.tta import single_view


def _feature_info_names(model: nn.Module) -> list[str]:
    info: Any = getattr(model, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):  # timm FeatureInfo (features_only models)
        return list(info.module_name())
    return [d["module"] for d in info if isinstance(d, dict) and d.get("module")]


def capture_outputs(model: nn.Module, layers: list[tuple[str, nn.Module]],
                    x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{layer name: output} for one eval-mode, no-grad forward pass of `x` (normalized model input)."""
    out: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and name not in out:  # first call of a shared module
                out[name] = output.detach()
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), single_view(model):  # hooks see the image as given, not its mirror too
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out


def _last_conv_per_resolution(model: nn.Module, x: torch.Tensor) -> list[str]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    outs = capture_outputs(model, convs, x)
    by_size: dict[tuple[int, int], str] = {}
    for name, _ in convs:  # registration order ~ forward order: the last one per size wins
        if name in outs and outs[name].ndim == 4:
            by_size[tuple(outs[name].shape[-2:])] = name
    return list(by_size.values())


def stage_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """(name, module) of every convolutional stage whose output is a 4-D feature map, input to output.
    `x`: one or more normalized model inputs (a probe batch; one image is enough)."""
    names = _feature_info_names(model) or _last_conv_per_resolution(model, x)
    layers = [(n, model.get_submodule(n)) for n in names]
    outs = capture_outputs(model, layers, x[:1])
    return [(n, m) for n, m in layers if n in outs and outs[n].ndim == 4]


def gradcam_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The last conv stage with more than one position (a 1x1 map gives a uniform, useless Grad-CAM);
    the last stage when all are 1x1."""
    layers = stage_layers(model, x)
    if not layers:
        raise ValueError(f"{type(model).__name__}: no convolutional stage with a 4-D output; "
                         "Grad-CAM needs a conv feature map")
    outs = capture_outputs(model, layers, x[:1])
    spatial = [(n, m) for n, m in layers if outs[n].shape[-2:].numel() > 1]
    return (spatial or layers)[-1]
