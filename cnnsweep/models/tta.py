"""Test-time augmentation inside a model's eval forward (`model.tta`).

It lives in the model, not in the evaluation loop, so validation, `analyze`'s predictions, the exported
.onnx graph (the traced eval forward) and serving all average the same views: one path, and a checkpoint
or .onnx file carries it. Training (train mode) sees one view.

Layer hooks (Grad-CAM, feature maps, deconvolution, the summary) explain the network on the image as
given: they run inside `single_view(model)`, which turns the averaging off for the duration.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn

TTA_MODES = ("none", "hflip")


def hflip_averaged(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is the mean softmax over `x` (N x C x H x W) and its mirror image.

    Both views go through one forward pass of a doubled batch (two passes kept the exporter from
    folding BatchNorm into the convolutions, whose weights they share). The mean of two probability
    vectors is taken in log space, as log-sum-exp written out elementwise (onnxruntime's int8
    pre-processing could not infer the output shape of ReduceLogSumExp):
    m + log((e^(a-m) + e^(b-m)) / 2) with m = max(a, b), so the log's argument is >= 1/2 and no logit
    becomes -inf where a probability underflows."""
    n = x.shape[0]
    both = forward(torch.cat([x, x.flip(-1)])).float().log_softmax(1)
    a, b = both[:n], both[n:]
    m = torch.maximum(a, b)
    return m + ((a - m).exp() + (b - m).exp()).mul(0.5).log()


@contextlib.contextmanager
def single_view(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every module of `model` with test-time augmentation sees the input as given."""
    saved = [(m, m.tta) for m in model.modules() if getattr(m, "tta", "none") != "none"]
    try:
        for m, _ in saved:
            m.tta = "none"
        yield model
    finally:
        for m, mode in saved:
            m.tta = mode
