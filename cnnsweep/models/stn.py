"""A spatial transformer (Jaderberg et al., "Spatial Transformer Networks", 2015) for the custom CNN.

A small localization net looks at the input and predicts an affine transform (2 x 3 matrix `theta`);
the input is resampled through it (bilinear) before the conv stages see it, so the network learns to
undo tilt, zoom and off-centre framing instead of spending capacity on every pose. It is trained end to
end by the classification loss alone. On GTSRB the single-model record (99.71%, Arcos-Garcia et al. 2018)
puts transformers in front of a plain CNN.

The last layer starts at zero weight and the identity's bias, so at initialisation the transformer
passes the image through unchanged and the CNN trains as it would without it. Both ops export to ONNX
(opset 20: the grid as plain arithmetic, then GridSample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnsweep.models.registry import ModelError

LOC_CHANNELS = (16, 32)  # the localization net's two 5x5 convs: it needs pose, not identity, so it is small
LOC_HIDDEN = 64  # units of its hidden FC layer
MIN_SIDE = 4  # it downsamples twice (2x2 max pool)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # theta of "no change", row-major 2 x 3


class SpatialTransformer(nn.Module):
    """x [N, C, H, W] -> the same shape, resampled through the affine transform the localization net predicts."""

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        if image_size < MIN_SIDE:
            raise ModelError(f"model.stn needs images of at least {MIN_SIDE} px, got {image_size}")
        c1, c2 = LOC_CHANNELS
        side = image_size // 4  # after the two max pools
        self.loc = nn.Sequential(
            nn.MaxPool2d(2), nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.Flatten(1),
            nn.Linear(c2 * side * side, LOC_HIDDEN), nn.ReLU(), nn.Linear(LOC_HIDDEN, 6))
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        nn.init.zeros_(self.loc[-1].weight)
        with torch.no_grad():
            self.loc[-1].bias.copy_(torch.tensor(IDENTITY))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        return self.loc(x).view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # grid and sampling in float32: under bf16 autocast the sampling positions would be off by up to
        # ~1/128 of the side (bf16 keeps 8 bits of mantissa)
        theta = self.theta(x).float()
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # zeros outside the image: the input is normalized, so 0 is the mean colour
        warped = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return warped.to(x.dtype)
