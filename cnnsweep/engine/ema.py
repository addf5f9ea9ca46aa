"""An exponential moving average (EMA) of the weights, evaluated, checkpointed and exported in their place.

Averaging the last few hundred optimizer steps' weights lands in a flatter region of the loss than the
last step alone, which is what generalizes (Polyak averaging; timm and torchvision's reference recipes
train their ImageNet models with it). timm's `ModelEmaV3` does the averaging; this file decides when:
once per optimizer step, with timm's warmup so the average of a short run is not dominated by its
random initialisation: decay(step) = min(`train.ema_decay`, 1 - (1 + step) ** -EMA_WARMUP_POWER).

Under DDP every rank holds the same weights after each step (the gradients are averaged and rank 0's
BatchNorm buffers broadcast), so every rank's average is the same too, and no extra collective is needed.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

# timm's warmup power for short runs (2/3 suits ~1e5 steps, 3/4 ~1e4): at 3/4 the decay reaches 0.99
# after ~460 steps and 0.995 after ~1,170, so a 3-epoch GTSRB run (816 steps of 128 images) averages
# over roughly its last 150 steps.
EMA_WARMUP_POWER = 0.75


class WeightAverage:
    """The EMA copy of `model`, on the same device. Its warmup counts optimizer steps, which the caller
    passes in (the scheduler's count: it is restored on resume, so the average needs no state of its own)."""

    def __init__(self, model: nn.Module, decay: float):
        # imported here: timm pulls in torchvision.models and torch._dynamo (seconds per process), and
        # every training process imports this module while few runs average their weights
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True, warmup_power=EMA_WARMUP_POWER)
        self.ema.module.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    @torch.no_grad()
    def update(self, model: nn.Module, num_steps: int) -> None:
        """After optimizer step `num_steps` (1-based); step 1 copies the weights (timm: decay 0)."""
        self.ema.update(model, step=num_steps)


def build_weight_average(model: nn.Module, decay: Optional[float]) -> Optional[WeightAverage]:
    """None when `train.ema_decay` is null (the last step's weights are the model)."""
    return WeightAverage(model, decay) if decay is not None else None
