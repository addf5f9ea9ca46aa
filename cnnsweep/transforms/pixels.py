"""`PixelPipeline`: `Preprocess` as a module over raw uint8 N x H x W x C pixels, for the exported graph.

It calls the very functions `Preprocess.prepare` and `Preprocess.normalize` call (channels,
equalization, normalization), so `torch.onnx.export` traces the training code itself into the .onnx
file and ONNX Runtime reproduces the training pixels exactly: the file is the whole contract for
images at the model's size, in the layout decoders produce and Triton/KServe clients send.

What stays outside the graph, as documented pre-steps (`split_for_graph`; `export.OnnxRunner` runs them):
- Resizing other sizes to the model's. ONNX Resize (antialiased linear) and PyTorch's differ by a
  grey level on a few pixels per image (measured: 2 of 144 at 16 -> 12 px), so a graph that resized
  would not reproduce training; the runner resizes with the training function instead.
- CLAHE (kornia), which traces only with a fixed batch size: for a CLAHE model the pre-step is
  `Preprocess.prepare` (channels, resize, CLAHE) and the graph only normalizes.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from cnnsweep.transforms.color import equalize, match_channels
from cnnsweep.transforms.preprocess import Preprocess, normalize_tensor

PRE_STEP_MODES = ("clahe",)  # equalization modes with no exact ONNX form: run before the graph


def split_for_graph(pre: Preprocess) -> tuple[Optional[Preprocess], Preprocess]:
    """(the Python pre-step for CLAHE models, or None; the part the graph does, which reads images at
    the model's size). Composed, they are `pre` exactly."""
    if pre.equalize not in PRE_STEP_MODES:
        return None, dataclasses.replace(pre, source_size=pre.output_size, resize_to=None)
    c = pre.in_channels
    in_graph = Preprocess(source_size=pre.output_size, source_channels=c, standardize=pre.standardize,
                          mean=pre.mean, std=pre.std)
    return dataclasses.replace(pre, standardize=False, mean=(0.0,) * c, std=(1.0,) * c), in_graph


class PixelPipeline(nn.Module):
    """uint8 N x H x W x C (C = the preprocessing's source channels, H x W its output size) -> float32
    model input N x C' x H x W: what `Preprocess.normalize(Preprocess.prepare(...))` makes of them."""

    def __init__(self, pre: Preprocess):
        super().__init__()
        if pre.equalize in PRE_STEP_MODES or pre.output_size != pre.source_size:
            raise ValueError(f"preprocessing with equalize={pre.equalize!r}, source size {pre.source_size} and "
                             f"output size {pre.output_size}: split_for_graph() first")
        self.pre = pre
        stats = pre.normalize_module()
        self.register_buffer("mean", stats.mean)
        self.register_buffer("std", stats.std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pre = self.pre
        x = match_channels(pixels.permute(0, 3, 1, 2), pre.in_channels)
        x = equalize(x, pre.equalize, pre.clahe_clip, pre.clahe_grid)
        return normalize_tensor(x, self.mean, self.std)


class PixelClassifier(nn.Module):
    """PixelPipeline then the network: raw uint8 N x H x W x C -> logits, the module export traces."""

    def __init__(self, pre: Preprocess, model: nn.Module):
        super().__init__()
        self.pixels = PixelPipeline(pre)
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.pixels(pixels))
