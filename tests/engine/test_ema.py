"""WeightAverage: timm's EMA with a warmed-up decay, stepped by the optimizer's step count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnsweep.engine.ema import EMA_WARMUP_POWER, build_weight_average


def test_no_decay_no_average():
    assert build_weight_average(nn.Linear(2, 2), None) is None


def _train_to(model: nn.Module, value: float, average, num_steps: int) -> None:
    """As if optimizer step `num_steps` had left every weight at `value`, then the average's update."""
    with torch.no_grad():
        model.weight.fill_(value)
    average.update(model, num_steps=num_steps)


def test_first_step_copies_then_the_warmed_up_decay_averages():
    model = nn.Linear(3, 1, bias=False)
    average = build_weight_average(model, decay=0.999)
    _train_to(model, 1.0, average, num_steps=1)
    assert torch.equal(average.module.weight, model.weight)  # step 1: decay 0
    _train_to(model, 3.0, average, num_steps=5)
    decay = 1 - (1 + 4) ** -EMA_WARMUP_POWER  # warmup < 0.999: the average follows early steps closely
    assert average.module.weight[0, 0].item() == pytest.approx(decay * 1.0 + (1 - decay) * 3.0)
    assert not average.module.weight.requires_grad


def test_the_decay_is_capped_by_the_configured_one():
    model = nn.Linear(1, 1, bias=False)
    average = build_weight_average(model, decay=0.5)
    _train_to(model, 0.0, average, num_steps=1)
    _train_to(model, 2.0, average, num_steps=10_000)  # warmup alone would give 0.999
    assert average.module.weight.item() == pytest.approx(1.0)


def test_buffers_are_averaged_too():
    model = nn.BatchNorm1d(2)
    average = build_weight_average(model, decay=0.5)
    average.update(model, num_steps=1)
    with torch.no_grad():
        model.running_mean.fill_(4.0)
    model.num_batches_tracked += 3
    average.update(model, num_steps=10_000)
    assert average.module.running_mean.tolist() == pytest.approx([2.0, 2.0])
    assert average.module.num_batches_tracked.item() == 3  # integers are copied
