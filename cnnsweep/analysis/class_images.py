"""Class images by activation maximization: optimize an input so that the model scores one class.

Optimizing raw pixels (`PixelSettings`, the Yosinski et al. 2015 recipe: jitter, blur, L2) gives coloured
noise that the model scores p = 1.00 but that no person, and no other model, reads as the class: an
adversarial pattern. The default (`ClassImageSettings`) follows Olah et al. 2017, "Feature Visualization"
(Lucid), to make pictures instead:
- Fourier parameterization: the optimized variables are the image's 2-D spectrum, scaled by 1 / f^decay
  (f in cycles/px), so every frequency starts with the energy of natural images and the gradient is not
  dominated by pixel-level noise;
- colour decorrelation: the 3 channels are a fixed mix (the square root of ImageNet's colour covariance)
  of decorrelated ones, so the optimizer moves along natural colour directions;
- pixel range by a sigmoid, so every image is a valid 0..255 picture without clamping;
- coarse to fine: in the first stages only low frequencies are free (the cutoff doubles each stage), i.e.
  the image is optimized at a low resolution first and refined at full resolution;
- transformation robustness: each step scores several random copies of each image (shifted, scaled and
  rotated a little); a pattern that only works at one exact pixel alignment is not rewarded;
- a total-variation prior against isolated pixels.
All classes are optimized together, one image per class in one batch (the model is in eval mode, so the
images do not interact through batch norm). The probability reported for each image is measured on the
returned uint8 image (quantized and normalized again), i.e. on exactly what a user could feed the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnsweep.analysis.display import as_hwc, normalized_range, to_display
from cnnsweep.analysis.plotting import new_grid, save_figure, short, show

# sqrt of ImageNet's RGB covariance (Lucid's color_correlation_svd_sqrt), columns scaled to max norm 1
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR_MIX = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()


@dataclass(frozen=True)
class ClassImageSettings:
    """The default: Fourier + colour-decorrelated, transformation-robust, coarse to fine (module doc)."""

    objective: str = "logit"  # "logit" (score before softmax) or "log_prob"
    steps: int = 192
    lr: float = 0.05  # Adam step on the scaled spectrum (Lucid's default)
    decay: float = 1.0  # spectrum amplitude ~ 1 / f^decay, f in cycles/px
    stages: int = 3  # coarse-to-fine stages: cutoff f <= 0.5 / 2^(stages - 1 - k) in stage k (cycles/px)
    copies: int = 4  # random transformed copies of each image scored per step
    translate: float = 0.1  # largest shift either way, fraction of the side
    scale: float = 0.1  # zoom factor drawn from [1 - scale, 1 + scale]
    rotation: float = 10.0  # largest rotation either way, degrees
    tv: float = 0.5  # weight of the mean absolute neighbour difference (0..1 pixel units) vs the target score
    init_std: float = 0.01  # of the starting spectrum (sigmoid(0) = mid gray)
    batch_size: int = 64  # classes optimized at once


@dataclass(frozen=True)
class PixelSettings:
    """The pixel-space baseline (Yosinski et al. 2015): Adam on normalized pixels, L2, jitter, blur, clamp."""

    objective: str = "log_prob"
    steps: int = 150
    lr: float = 0.1  # Adam step, normalized-input units (1 = one training-set std)
    l2: float = 1e-3  # weight of the mean squared normalized pixel, per image, vs the target score
    # jitter and blur are given for a 32 px image and scale with the side
    jitter: int = 2  # px at 32 px, max roll per axis
    blur_every: int = 10  # steps
    blur_sigma: float = 0.5  # px at 32 px
    init_std: float = 0.1  # of the starting noise, normalized units
    batch_size: int = 64


Settings = Union[ClassImageSettings, PixelSettings]


def _target_score(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    """Per-image score of its target class: the logit, or its log-probability."""
    logits = model(x).float()
    if objective == "log_prob":
        logits = logits.log_softmax(1)
    return logits[torch.arange(len(x), device=x.device), targets]


# ------------------------------------------------------------------------------------------ pixel space


def _random_shift(jitter: int, gen: torch.Generator) -> tuple[int, int]:
    """(dy, dx) in px, each uniform in -jitter..jitter."""
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
    return dy, dx


def _optimize_pixels(model: nn.Module, targets: torch.Tensor, shape: tuple[int, ...], low: torch.Tensor,
                     high: torch.Tensor, s: PixelSettings, gen: torch.Generator) -> torch.Tensor:
    """Normalized model-space images, optimized directly (the baseline)."""
    x = (torch.randn((len(targets), *shape), generator=gen) * s.init_std).to(low.device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=s.lr)
    scale = shape[-1] / 32  # the settings are given for a 32 px side
    jitter, sigma = int(s.jitter * scale), s.blur_sigma * scale
    for step in range(1, s.steps + 1):
        dy, dx = _random_shift(jitter, gen)
        score = _target_score(model, torch.roll(x, (dy, dx), dims=(2, 3)), targets, s.objective)
        score = score - s.l2 * x.square().flatten(1).mean(1)
        (grad,) = torch.autograd.grad(-score.sum(), x)  # only the input: the weights' .grad stay untouched
        x.grad = grad
        opt.step()
        with torch.no_grad():
            if s.blur_every and step % s.blur_every == 0 and sigma > 0.2:  # below 0.2 px: a no-op
                x.copy_(TF.gaussian_blur(x, kernel_size=[2 * math.ceil(2 * sigma) + 1] * 2, sigma=[sigma] * 2))
            x.copy_(torch.maximum(torch.minimum(x, high), low))
    return x.detach()


# ---------------------------------------------------------------------------------------- Fourier space


def _frequencies(h: int, w: int) -> torch.Tensor:
    """|f| in cycles/px of each rfft2 coefficient, H x (W // 2 + 1)."""
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    return (fy.square() + fx.square()).sqrt()


class _FourierImage:
    """N images in 0..1 from a 1/f-scaled spectrum, colour-decorrelated, squashed by a sigmoid."""

    def __init__(self, n: int, shape: tuple[int, ...], s: ClassImageSettings, gen: torch.Generator, device):
        c, h, w = shape
        freqs = _frequencies(h, w)
        # 1/f^decay amplitude, floored at one cycle per image; x sqrt(h w) undoes irfft2's 1/(h w) norm
        self.scale = (1 / freqs.clamp(min=1 / max(h, w)) ** s.decay * math.sqrt(h * w)).to(device)
        self.freqs, self.size, self.channels = freqs.to(device), (h, w), c
        self.spectrum = (torch.randn((n, c, *freqs.shape, 2), generator=gen) * s.init_std).to(device)
        self.spectrum.requires_grad_(True)

    def unit(self, cutoff: float) -> torch.Tensor:
        """N x C x H x W in 0..1, frequencies above `cutoff` (cycles/px) held at zero."""
        coeffs = torch.view_as_complex(self.spectrum) * self.scale * (self.freqs <= cutoff)
        x = torch.fft.irfft2(coeffs, s=self.size) / 4  # /4: Lucid's scale, keeps the start near gray
        if self.channels == 3:
            x = torch.einsum("nchw,dc->ndhw", x, _COLOUR_MIX.to(x.device))
        return torch.sigmoid(x)


def _random_views(unit: torch.Tensor, s: ClassImageSettings, gen: torch.Generator) -> torch.Tensor:
    """`copies` random affine views of each image (shift, zoom, rotation), N * copies x C x H x W."""
    n = len(unit) * s.copies
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(s.rotation)
    zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * s.scale
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * s.translate * 2  # affine_grid spans -1..1 = 2 sides
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    x = unit.repeat_interleave(s.copies, 0)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _total_variation(unit: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference between neighbouring pixels (0..1 units)."""
    dy = (unit[..., 1:, :] - unit[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (unit[..., :, 1:] - unit[..., :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def _cutoff(step: int, s: ClassImageSettings) -> float:
    """Highest free frequency at `step` (cycles/px): 0.5 / 2^(stages - 1 - stage), then everything."""
    stage = step // max(1, math.ceil(s.steps / max(1, s.stages)))
    if stage >= s.stages - 1:
        return 1.0  # above the highest frequency of the grid (0.71 cycles/px): nothing masked
    return 0.5 / 2 ** (s.stages - 1 - stage)


def _optimize_fourier(model: nn.Module, targets: torch.Tensor, shape: tuple[int, ...], low: torch.Tensor,
                      high: torch.Tensor, s: ClassImageSettings, gen: torch.Generator) -> torch.Tensor:
    """Normalized model-space images (module doc: Fourier, decorrelated, robust, coarse to fine)."""
    image = _FourierImage(len(targets), shape, s, gen, low.device)
    opt = torch.optim.Adam([image.spectrum], lr=s.lr)
    for step in range(s.steps):
        unit = image.unit(_cutoff(step, s))
        views = low + _random_views(unit, s, gen) * (high - low)
        score = _target_score(model, views, targets.repeat_interleave(s.copies), s.objective)
        loss = -score.view(-1, s.copies).mean(1) + s.tv * _total_variation(unit)
        (grad,) = torch.autograd.grad(loss.sum(), image.spectrum)  # the weights' .grad stay untouched
        image.spectrum.grad = grad
        opt.step()
    with torch.no_grad():
        return low + image.unit(_cutoff(s.steps, s)) * (high - low)


def target_probabilities(model: nn.Module, preprocess, images_uint8: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """softmax probability of each image's target class, images given as display uint8."""
    with torch.no_grad():
        probs = model(preprocess.normalize(images_uint8)).float().softmax(1)
    return probs[torch.arange(len(targets)), targets.to(probs.device)].cpu()


def generate_class_images(model: nn.Module, preprocess, classes: list[int], *,
                          settings: Settings = ClassImageSettings(),
                          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 display images K x C x H x W, probability of its class per image) for the K `classes`."""
    device = next(model.parameters()).device
    low, high = normalized_range(preprocess, device)
    gen = torch.Generator().manual_seed(seed)
    optimize = _optimize_pixels if isinstance(settings, PixelSettings) else _optimize_fourier
    was_training = model.training
    model.eval()
    images, probs = [], []
    try:
        for start in range(0, len(classes), settings.batch_size):
            targets = torch.tensor(classes[start:start + settings.batch_size], device=device)
            x = optimize(model, targets, tuple(preprocess.input_shape), low, high, settings, gen)
            shown = to_display(preprocess, x)
            images.append(shown.cpu())
            probs.append(target_probabilities(model, preprocess, shown, targets))
    finally:
        model.train(was_training)
    return torch.cat(images), torch.cat(probs)


def recognized_by(judge, images_uint8: torch.Tensor, classes: list[int]) -> tuple[float, list[int]]:
    """(share of images whose top-1 class under `judge` is their own class, the judge's top-1 classes).

    `judge` is a predictor (uint8 N x C x H x W -> logits through its own preprocessing): a model trained
    apart from the one that made the images. Its agreement says the image shows the class, not a pattern
    only the generating model responds to.
    """
    predicted = [int(c) for c in np.asarray(judge.split_logits(images_uint8)).argmax(1)]
    return sum(p == c for p, c in zip(predicted, classes)) / len(classes), predicted


def save_class_image_grid(images: torch.Tensor, probs: torch.Tensor, classes: list[int],
                          class_names: list[str], path: str | Path, columns: int = 8) -> Path:
    """PNG grid: one generated image per class, titled with the class name and its probability."""
    rows = -(-len(images) // columns)
    fig, axes = new_grid(rows, min(columns, len(images)), extra_height=0.45)
    for k, (image, p, c) in enumerate(zip(images, probs.tolist(), classes)):
        show(axes.flat[k], as_hwc(image), f"{c}: {short(class_names[c], 18)}\np={p:.2f}")
    return save_figure(fig, path, "Class images (activation maximization)")
