"""`BatchAugment`: per-sample random augmentation of a whole uint8 batch on its device, in one pass.

All random parameters for the batch are drawn at once (one `torch.rand` per kind), the geometric part
is ONE affine matrix per sample applied by a single `grid_sample` call, and the color part is
broadcast tensor math: no Python loop over images. uint8 in, uint8 out (rounded, clamped), so the
trainer normalizes augmented batches with exactly the code used at evaluation and serving time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnsweep.config import AugmentConfig
from cnnsweep.transforms.color import luma, to_uint8
from cnnsweep.transforms.preprocess import check_uint8_batch


@dataclass
class AugmentParams:
    """Per-sample parameters, each a tensor of length N; None = that operation is off."""

    angle: torch.Tensor | None = None  # degrees, positive = counter-clockwise like torchvision's rotate()
    translate: torch.Tensor | None = None  # N x 2: (dx, dy) as fractions of width, height
    scale: torch.Tensor | None = None  # zoom factor, > 1 enlarges
    flip: torch.Tensor | None = None  # bool: mirror left-right
    brightness: torch.Tensor | None = None  # multiplicative factors, 1 = unchanged
    contrast: torch.Tensor | None = None
    saturation: torch.Tensor | None = None

    @property
    def geometric(self) -> bool:
        return any(p is not None for p in (self.angle, self.translate, self.scale, self.flip))


def affine_theta(p: AugmentParams, n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """N x 2 x 3 matrices for F.affine_grid: output pixel -> input pixel, in normalized [-1, 1] coordinates.

    The forward map (in pixels, origin at the centre, y down) is  u' = R(angle) S(scale) Flip u + t.
    affine_grid wants its inverse, written out analytically (A^-1 = Flip S^-1 R^T, t^-1 = -A^-1 t)
    instead of a batched matrix inverse. Pixel -> normalized coordinates scale x by 2/w and y by 2/h,
    which is why the off-diagonal terms pick up h/w and w/h (rotation stays a rotation on non-square images).
    """
    ones = torch.ones(n, device=device)
    rad = torch.deg2rad(p.angle) if p.angle is not None else torch.zeros(n, device=device)
    cos, sin = rad.cos(), rad.sin()
    inv_s = 1 / p.scale if p.scale is not None else ones
    f = torch.where(p.flip, -ones, ones) if p.flip is not None else ones
    # Inverse linear part in pixels. R (counter-clockwise on screen, y down) = [[c, s], [-s, c]].
    a00, a01 = f * cos * inv_s, -f * sin * inv_s
    a10, a11 = sin * inv_s, cos * inv_s
    t = p.translate if p.translate is not None else torch.zeros(n, 2, device=device)
    tx, ty = t[:, 0] * w, t[:, 1] * h  # pixels
    theta = torch.stack([
        torch.stack([a00, a01 * h / w, -(a00 * tx + a01 * ty) * 2 / w], dim=1),
        torch.stack([a10 * w / h, a11, -(a10 * tx + a11 * ty) * 2 / h], dim=1),
    ], dim=1)
    return theta


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp a float batch with one bilinear grid_sample call.

    padding_mode="border": pixels that rotation/shift/zoom-out bring in from outside copy the nearest
    edge pixel. GTSRB crops keep a ~10% background margin, so that is background-coloured, whereas
    "zeros" would paint black wedges that never occur at test time and drag the batch statistics away
    from the normalization mean/std measured on unaugmented images.
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to 0..255 after each op like torchvision."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return luma(x) if x.shape[1] == 3 else x


def apply_color(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Color jitter on a float 0..255 batch with torchvision's semantics, fixed order B -> C -> S."""
    if p.brightness is not None:  # blend with black
        x = (x * p.brightness.view(-1, 1, 1, 1)).clamp_(0, 255)
    if p.contrast is not None:  # blend with the image's mean gray level
        x = _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), p.contrast)
    if p.saturation is not None and x.shape[1] == 3:  # blend with its own grayscale; no-op for 1 channel
        x = _blend(x, luma(x), p.saturation)
    return x


class BatchAugment:
    """Callable(uint8 N x C x H x W, generator=None, mask=None) -> augmented uint8 batch, same device."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __repr__(self) -> str:
        return f"BatchAugment({self.cfg!r})"

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> AugmentParams:
        """Draw every sample's parameters; on the generator's device (so a seed reproduces), then moved."""
        c = self.cfg
        src = generator.device if generator is not None else torch.device(device)

        def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
            r = torch.rand((n, *shape), generator=generator, device=src)
            return (lo + (hi - lo) * r).to(device)

        def factor(strength: float) -> torch.Tensor | None:  # torchvision: uniform in [max(0, 1-s), 1+s]
            return uniform(max(0.0, 1 - strength), 1 + strength) if strength else None

        return AugmentParams(
            angle=uniform(-c.rotation, c.rotation) if c.rotation else None,
            translate=uniform(-c.translate, c.translate, 2) if c.translate else None,
            scale=uniform(1 - c.scale, 1 + c.scale) if c.scale else None,
            flip=uniform(0, 1) < 0.5 if c.hflip else None,
            brightness=factor(c.brightness), contrast=factor(c.contrast), saturation=factor(c.saturation))

    def apply(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Deterministic part: uint8 batch + explicit parameters -> uint8 batch."""
        check_uint8_batch(x)
        y = x.float()  # 0..255 units throughout; rounded back once at the end
        if p.geometric:
            y = apply_affine(y, affine_theta(p, len(x), x.shape[2], x.shape[3], x.device))
        return to_uint8(apply_color(y, p))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """Augment every sample, or only those where `mask` (bool, length N) is True."""
        check_uint8_batch(x)
        out = self.apply(x, self.sample(len(x), generator, x.device))
        if mask is None:
            return out
        if mask.shape != (len(x),):
            raise ValueError(f"augment mask: expected shape ({len(x)},), got {tuple(mask.shape)}")
        # Augment all, keep the masked ones: torch.where needs no host sync, unlike indexing by
        # mask.nonzero(), and draws the same per-sample parameters whatever the mask is.
        return torch.where(mask.to(x.device, torch.bool).view(-1, 1, 1, 1), out, x)


def build_augment(cfg: AugmentConfig) -> BatchAugment | None:
    """The training augmentation, or None when every option is off (the trainer then skips the call)."""
    return BatchAugment(cfg) if cfg.enabled else None


def default_balance_augment() -> BatchAugment:
    """Mild augmentation forced onto the duplicates of `balance: oversample_augment` when `augment` is off,
    so oversampled minority images are not exact copies."""
    return BatchAugment(AugmentConfig(rotation=10, translate=0.1, scale=0.1, brightness=0.2, contrast=0.2))
