"""Class images by activation maximization: from noise, optimize the input to raise one class's score.

All classes are optimized together, one image per class in one batch (the model is in eval mode, so
the images do not interact through batch norm). Each step maximizes the target logit (the score before
softmax: maximizing the probability could also be done by lowering the other classes) minus an L2 penalty
on the normalized image, with the regularizers of Yosinski et al. 2015 that keep the image natural:
- random jitter: the image is rolled by up to `jitter` px before each step and rolled back after;
- a Gaussian blur every `blur_every` steps removes the high-frequency patterns a CNN also responds to;
- a clamp to the normalized values of pixels 0..255, so every image is a valid input.
The probability reported for each image is measured on the returned uint8 image (quantized and
normalized again), i.e. on exactly what a user could feed back to the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnsweep.analysis.display import as_hwc, normalized_range, to_display
from cnnsweep.analysis.plotting import new_grid, save_figure, short, show


@dataclass(frozen=True)
class ClassImageSettings:
    objective: str = "log_prob"  # or "logit" (see the module doc)
    steps: int = 150
    lr: float = 0.1  # Adam step, normalized-input units (1 = one training-set std)
    l2: float = 1e-3  # weight of the mean squared normalized pixel, per image, vs the target logit
    # jitter and blur are given for a 32 px image and scale with the side: on 8 px digits a 2 px roll
    # or a 0.5 px blur wipes out the image (measured: min class probability 0.25 vs 0.83 without)
    jitter: int = 2  # px at 32 px, max roll per axis
    blur_every: int = 10  # steps
    blur_sigma: float = 0.5  # px at 32 px
    init_std: float = 0.1  # of the starting noise, normalized units
    batch_size: int = 64  # classes optimized at once


def _random_shift(jitter: int, gen: torch.Generator) -> tuple[int, int]:
    """(dy, dx) in px, each uniform in -jitter..jitter."""
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
    return dy, dx


def _optimize(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, low: torch.Tensor,
              high: torch.Tensor, s: ClassImageSettings, gen: torch.Generator) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=s.lr)
    rows = torch.arange(len(x), device=x.device)
    scale = x.shape[-1] / 32  # the settings are given for a 32 px side
    jitter, sigma = int(s.jitter * scale), s.blur_sigma * scale
    for step in range(1, s.steps + 1):
        dy, dx = _random_shift(jitter, gen)
        logits = model(torch.roll(x, (dy, dx), dims=(2, 3)))
        if s.objective == "log_prob":
            logits = logits.float().log_softmax(1)
        score = logits[rows, targets] - s.l2 * x.square().flatten(1).mean(1)
        (grad,) = torch.autograd.grad(-score.sum(), x)  # only the input: the weights' .grad stay untouched
        x.grad = grad
        opt.step()
        with torch.no_grad():
            if s.blur_every and step % s.blur_every == 0 and sigma > 0.2:  # below 0.2 px: a no-op
                x.copy_(TF.gaussian_blur(x, kernel_size=[2 * math.ceil(2 * sigma) + 1] * 2, sigma=[sigma] * 2))
            x.copy_(torch.maximum(torch.minimum(x, high), low))
    return x.detach()


def target_probabilities(model: nn.Module, preprocess, images_uint8: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """softmax probability of each image's target class, images given as display uint8."""
    with torch.no_grad():
        probs = model(preprocess.normalize(images_uint8)).float().softmax(1)
    return probs[torch.arange(len(targets)), targets.to(probs.device)].cpu()


def generate_class_images(model: nn.Module, preprocess, classes: list[int], *,
                          settings: ClassImageSettings = ClassImageSettings(),
                          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 display images K x C x H x W, probability of its class per image) for the K `classes`."""
    device = next(model.parameters()).device
    low, high = normalized_range(preprocess, device)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    images, probs = [], []
    try:
        for start in range(0, len(classes), settings.batch_size):
            targets = torch.tensor(classes[start:start + settings.batch_size], device=device)
            noise = torch.randn((len(targets), *preprocess.input_shape), generator=gen) * settings.init_std
            x = _optimize(model, noise.to(device), targets, low, high, settings, gen)
            shown = to_display(preprocess, x)
            images.append(shown.cpu())
            probs.append(target_probabilities(model, preprocess, shown, targets))
    finally:
        model.train(was_training)
    return torch.cat(images), torch.cat(probs)


def save_class_image_grid(images: torch.Tensor, probs: torch.Tensor, classes: list[int],
                          class_names: list[str], path: str | Path, columns: int = 8) -> Path:
    """PNG grid: one generated image per class, titled with the class name and its probability."""
    rows = -(-len(images) // columns)
    fig, axes = new_grid(rows, min(columns, len(images)), extra_height=0.45)
    for k, (image, p, c) in enumerate(zip(images, probs.tolist(), classes)):
        show(axes.flat[k], as_hwc(image), f"{c}: {short(class_names[c], 18)}\np={p:.2f}")
    return save_figure(fig, path, "Class images (activation maximization from noise)")
