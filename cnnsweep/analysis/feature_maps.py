"""Feature maps: the output of every convolutional stage for a few images, one PNG grid per stage.

Each row is one image: its display pixels, then the stage's most active channels (ranked by the mean
activation over the shown images, so every row shows the same channels). Each map has its own colour
scale (viridis, min..max of that map): absolute values differ by orders of magnitude between channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnsweep.analysis.display import as_hwc, model_inputs
from cnnsweep.analysis.layers import capture_outputs, stage_layers
from cnnsweep.analysis.plotting import new_grid, save_figure, show


def stage_activations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{stage name: N x C x H x W output} for normalized model inputs `x`, input to output order."""
    layers = stage_layers(model, x)
    outs = capture_outputs(model, layers, x)
    return {n: outs[n].float().cpu() for n, _ in layers}


def top_channels(acts: torch.Tensor, k: int) -> list[int]:
    """The k channels with the largest mean activation over images and positions."""
    return acts.mean(dim=(0, 2, 3)).topk(min(k, acts.shape[1])).indices.tolist()


def save_stage_grid(shown: torch.Tensor, acts: torch.Tensor, name: str, path: Path,
                    num_channels: int = 12) -> Path:
    """One PNG: rows = images; columns = input, then the `num_channels` most active channels."""
    channels = top_channels(acts, num_channels)
    fig, axes = new_grid(len(shown), 1 + len(channels))
    for r, image in enumerate(shown):
        show(axes[r, 0], as_hwc(image), "input" if r == 0 else "")
        for c, ch in enumerate(channels, start=1):
            show(axes[r, c], acts[r, ch].numpy(), f"ch {ch}" if r == 0 else "", cmap="viridis")
    _, num_chs, h, w = acts.shape
    return save_figure(fig, path, f"{name}: {num_chs} channels, {h}x{w}; {len(channels)} most active shown")


def save_feature_map_grids(model: nn.Module, preprocess, images_uint8: torch.Tensor, out_dir: str | Path,
                           *, num_channels: int = 12) -> list[dict]:
    """One PNG per conv stage under `out_dir`; returns [{"section", "title", "path", "caption"}]."""
    device = next(model.parameters()).device
    shown, x = model_inputs(preprocess, images_uint8, device)
    figures = []
    for i, (name, acts) in enumerate(stage_activations(model, x).items()):
        path = save_stage_grid(shown.cpu(), acts, name, Path(out_dir) / f"feature_maps_{i}.png", num_channels)
        figures.append({"section": "feature_maps", "title": f"Feature maps: {name}", "path": str(path),
                        "caption": f"Output of stage {name} ({acts.shape[1]} channels, "
                                   f"{acts.shape[2]}x{acts.shape[3]}) for {len(shown)} images: "
                                   "the most active channels, each on its own colour scale."})
    return figures
