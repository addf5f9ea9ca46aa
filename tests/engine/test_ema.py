"""WeightAverage: timm's EMA with a warmed-up decay, stepped by the optimizer's step count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnsweep.engine.ema import EMA_WARMUP_POWER, build_weight_average


def test_no_decay_no_average():
    assert build_weight_average(nn.Linear(2, 2), None) is None


def test_first_step_copies_then_the_warmed_up_decay_averages():
    model = nn.Linear(3, 1, bias=False)
    average = build_weight_average(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model, num_steps=1)
    assert torch.equal(average.module.weight, model.weight)  # step 1: decay 0
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(model, num_steps=5)
    decay = 1 - (1 + 4) ** -EMA_WARMUP_POWER  # warmup < 0.999: the average follows early steps closely
    assert average.module.weight[0, 0].item() == pytest.approx(decay * 1.0 + (1 - decay) * 3.0)
    assert not average.module.weight.requires_grad


def test_the_decay_is_capped_by_the_configured_one():
    model = nn.Linear(1, 1, bias=False)
    average = build_weight_average(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average.update(model, num_steps=1)
    with torch.no_grad():
        model.weight.fill_(2.0)
    average.update(model, num_steps=10_000)  # warmup alone would give 0.999
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
