"""Deconvolution (Zeiler & Fergus 2014): project a layer's strongest activation back to pixel space.

For each image, the strongest activation (channel, row, col) of a layer is picked and captum's
`NeuronDeconvolution` propagates it back to the input: the backward pass of a conv is the transposed
conv (the filters, flipped), the backward pass of max pooling routes the signal to the position that
won the max (the "switches"), and at every nn.ReLU the signal itself is rectified (the deconvnet rule)
instead of being gated by the forward activation. Other activations (GELU, SiLU, ...) pass the plain
gradient, so for them this is a gradient map, not a strict deconvnet.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from cnnsweep.analysis.display import as_hwc, model_inputs
from cnnsweep.analysis.layers import capture_outputs, stage_layers
from cnnsweep.analysis.plotting import new_grid, save_figure, show
from cnnsweep.models.tta import single_view


@contextlib.contextmanager
def _no_inplace_relu(model: nn.Module) -> Iterator[None]:
    """captum hooks the backward of nn.ReLU modules, which fails on in-place ones (timm's ResNets)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for m in relus:
        m.inplace = False
    try:
        yield
    finally:
        for m in relus:
            m.inplace = True


def strongest_neurons(acts: torch.Tensor) -> torch.Tensor:
    """N x C x H x W activations -> N x 3 long tensor of (channel, row, col) of each image's maximum."""
    _, _, h, w = acts.shape
    flat = acts.flatten(1).argmax(1)
    return torch.stack([flat // (h * w), (flat // w) % h, flat % w], dim=1)


def deconv_projection(model: nn.Module, x: torch.Tensor, layer: tuple[str, nn.Module]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(projection N x C x H x W in input space, neurons N x 3) for each image's strongest activation."""
    from captum.attr import NeuronDeconvolution

    name, module = layer
    neurons = strongest_neurons(capture_outputs(model, [layer], x)[name])

    def select(out: torch.Tensor) -> torch.Tensor:  # one neuron per image: the batch shares one call
        idx = (neurons[:, 0] * out.shape[2] + neurons[:, 1]) * out.shape[3] + neurons[:, 2]
        return out.flatten(1).gather(1, idx.to(out.device)[:, None]).squeeze(1)

    was_training = model.training
    model.eval()
    try:
        with _no_inplace_relu(model), single_view(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Setting backward hooks on ReLU")  # captum's, expected
            proj = NeuronDeconvolution(model, module).attribute(x.clone().requires_grad_(True), select)
    finally:
        model.train(was_training)
    return proj.detach().float().cpu(), neurons.cpu()


def signed_to_unit(p: torch.Tensor) -> torch.Tensor:
    """Per image: 0.5 = no contribution, 0 / 1 = the largest negative / positive one (as in the paper)."""
    scale = p.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return p / (2 * scale) + 0.5


def save_deconv_figure(model: nn.Module, preprocess, images_uint8: torch.Tensor, path: str | Path,
                       layers: list[tuple[str, nn.Module]] | None = None) -> tuple[Path, list[dict]]:
    """PNG: rows = images; columns = input | projection per layer (default: every conv stage).
    Returns (path, [{"layer", "neurons": [[channel, row, col], ...]}])."""
    device = next(model.parameters()).device
    shown, x = model_inputs(preprocess, images_uint8, device)
    layers = layers if layers is not None else stage_layers(model, x)
    fig, axes = new_grid(len(shown), 1 + len(layers))
    info = []
    for c, layer in enumerate(layers, start=1):
        proj, neurons = deconv_projection(model, x, layer)
        unit = (signed_to_unit(proj) * 255).round().to(torch.uint8)
        for r in range(len(shown)):
            ch, i, j = neurons[r].tolist()
            show(axes[r, c], as_hwc(unit[r]), f"{layer[0]}\nch {ch} @ ({i},{j})")
        info.append({"layer": layer[0], "neurons": neurons.tolist()})
    for r, image in enumerate(shown.cpu()):
        show(axes[r, 0], as_hwc(image), "input")
    return save_figure(fig, path, "Deconvolution: strongest activation per layer, projected to pixels"), info
