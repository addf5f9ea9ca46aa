"""Deterministic pixel operations on uint8 NCHW batches: luma, resize, histogram equalization.

Every function takes and returns uint8 (0..255) so `Preprocess.prepare` can store its result in the
same dtype the dataset lives in; float is only an intermediate, rounded (not truncated) back.
"""

from __future__ import annotations

import kornia
import torch
import torchvision.transforms.v2.functional as TF

# ITU-R BT.601 luma weights (R, G, B): the Y of JPEG's YCbCr and of kornia.color.rgb_to_ycbcr.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# The same weights x 1000, for exact integer luma on uint8 images (see luma_uint8).
_LUMA_MILLI = (299, 587, 114)

EQUALIZE_MODES = ("none", "global", "clahe")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in 0..255 units -> uint8, rounding to nearest (a plain cast would truncate: 254.9 -> 254)."""
    return x.round().clamp_(0, 255).to(torch.uint8)


def luma(x: torch.Tensor) -> torch.Tensor:
    """float N x 3 x H x W -> float N x 1 x H x W, same units as the input."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _luma_milli(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> int32 N x 1 x H x W holding 1000 x luma, exactly."""
    w = torch.tensor(_LUMA_MILLI, dtype=torch.int32, device=x.device).view(1, 3, 1, 1)
    return (x.to(torch.int32) * w).sum(dim=1, keepdim=True)


def _round_milli(v: torch.Tensor) -> torch.Tensor:
    """int32 in 1/1000 units -> uint8, rounding halves up, clamped to 0..255."""
    return torch.div(v + 500, 1000, rounding_mode="floor").clamp_(0, 255).to(torch.uint8)


def luma_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> uint8 N x 1 x H x W luma.

    Integer arithmetic on purpose: ~1 in 1000 uint8 pixels has a luma ending in exactly .5 (the weights
    are multiples of 0.001), and float32 error then rounds it up on one device and down on another,
    which equalization can amplify; training on GPU and serving on CPU must produce the same pixels.
    """
    return _round_milli(_luma_milli(x))


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 batch with 1 or 3 channels -> `channels` (1: luma of RGB, 3: gray repeated)."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 3 and channels == 1:
        return luma_uint8(x)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    raise ValueError(f"images have {c} channels; expected 1 or 3 (convert to {channels})")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 batch -> uint8 batch of spatial `size` (H, W); antialiased bilinear so shrinking does not alias."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return TF.resize(x, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def _equalize_gray(y: torch.Tensor, mode: str, clip: float, grid: int) -> torch.Tensor:
    """Equalize a uint8 N x 1 x H x W (or N x C, channel by channel) batch."""
    if mode == "global":
        return TF.equalize(y)  # per image and channel: its own 256-bin CDF
    # kornia's CLAHE works on float 0..1; clip_limit has OpenCV's meaning (x mean bin count per tile).
    out = kornia.enhance.equalize_clahe(y.float() / 255, clip_limit=float(clip), grid_size=(grid, grid))
    return to_uint8(out * 255)


def equalize(x: torch.Tensor, mode: str, clip: float = 2.0, grid: int = 8) -> torch.Tensor:
    """Histogram equalization of a uint8 N x C x H x W batch, mode in EQUALIZE_MODES.

    Color images are equalized on their luma only (YCbCr: equalize Y, keep Cb/Cr): equalizing R, G and B
    separately stretches each channel by a different curve and so shifts hues (a red sign turns orange).
    """
    if mode == "none":
        return x
    if mode not in EQUALIZE_MODES:
        raise ValueError(f"equalize: unknown mode {mode!r}; expected one of {EQUALIZE_MODES}")
    if x.shape[1] == 1:
        return _equalize_gray(x, mode, clip, grid)
    y_milli = _luma_milli(x)
    y_new = _equalize_gray(_round_milli(y_milli), mode, clip, grid)
    # Replacing Y and keeping Cb, Cr adds the same (Y' - Y) to R, G and B (the YCbCr -> RGB matrix
    # has ones in its Y column), done in 1/1000 integer units so every device rounds alike.
    shift = 1000 * y_new.to(torch.int32) - y_milli
    return _round_milli(1000 * x.to(torch.int32) + shift)
