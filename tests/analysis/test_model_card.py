"""Model card: measured activation bytes on a model whose saved tensors are known by hand."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnsweep.analysis.model_card import (build_model_card, saved_activation_bytes,
                                          training_activation_bytes, training_flops)


def _small():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def test_saved_bytes_counted_by_hand():
    # conv saves its input (1x8x8), ReLU its output (4x8x8); Flatten is a view of that output and
    # Linear saves that same view: counted once. Weights are not activations. fp32 = 4 bytes.
    assert saved_activation_bytes(_small(), (1, 8, 8), batch=5) == 5 * (64 + 256) * 4


def test_extrapolation_matches_a_direct_measurement(tiny_rgb):
    model, _, _ = tiny_rgb
    direct = saved_activation_bytes(model, (3, 16, 16), batch=50)
    assert training_activation_bytes(model, (3, 16, 16), 50) == pytest.approx(direct, rel=0.01)


def test_training_flops_match_a_direct_count(tiny_rgb):
    model, _, _ = tiny_rgb
    with FlopCounterMode(display=False) as counter:
        model.train()(torch.randn(50, 3, 16, 16)).sum().backward()
    assert training_flops(model.eval(), (3, 16, 16), 50) == counter.get_total_flops()


def test_card_numbers_and_note(tiny_rgb):
    model, pre, _ = tiny_rgb
    before = {k: v.clone() for k, v in model.state_dict().items()}
    card = build_model_card(model, pre.input_shape)
    json.dumps(card)
    n = sum(p.numel() for p in model.parameters())
    mem = card["memory_bytes"]
    assert card["params"]["total"] == n and card["batch_size"] == 50
    assert mem["train_batch"]["gradients"] == 4 * n and mem["train_batch"]["optimizer_state"] == 8 * n
    assert mem["train_batch"]["total"] == sum(v for k, v in mem["train_batch"].items() if k != "total")
    assert mem["train_batch"]["activations"] > mem["train_batch"]["weights"]  # 50 images of activations
    assert card["flops"]["train_batch"] > 2 * 50 * card["flops"]["predict_one"]  # backward ~2x forward
    assert "course" in card["note"] and "only the weights" in card["note"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # measured on a copy: BN stats untouched
