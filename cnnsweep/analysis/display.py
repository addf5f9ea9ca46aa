"""Display space: what the model sees, as uint8 pixels a person can look at.

The model input is `Preprocess.normalize(Preprocess.prepare(uint8))`; `prepare` gives the resized /
grayscale / equalized uint8 image (display space) and `to_display` undoes the normalization of a float
model-space tensor.
"""

from __future__ import annotations

import numpy as np
import torch


def model_inputs(preprocess, images_uint8: torch.Tensor,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(prepared uint8 display images, normalized float model inputs), both N x C x H x W on `device`."""
    shown = preprocess.prepare(images_uint8.to(device))
    return shown, preprocess.normalize(shown)


def normalized_range(preprocess, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each 1 x C x 1 x 1: model-space values of pixel 0 and pixel 255 per channel."""
    mean = torch.tensor(preprocess.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, device=device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def to_display(preprocess, x: torch.Tensor) -> torch.Tensor:
    """Normalized float N x C x H x W -> uint8 display pixels (x * std + mean, 0..1 -> 0..255, rounded)."""
    low, high = normalized_range(preprocess, x.device)
    unit = (x.detach().float() - low) / (high - low)  # = x * std + mean, in 0..1 units
    return (unit.clamp(0, 1) * 255).round().to(torch.uint8)


def as_hwc(image: torch.Tensor) -> np.ndarray:
    """C x H x W (C in {1, 3}) -> H x W (gray) or H x W x 3 numpy, for imshow."""
    a = image.detach().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
