"""Model summary: exact counts on a hand-computed model, memory estimates, micro-batch fitting."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from cnnsweep.config import RunConfig
from cnnsweep.models import ModelError, create_model
from cnnsweep.models.summary import (ModelSummary, parse_memory, print_summary, suggest_micro_batch, summarize,
                              summarize_config)


def _tiny() -> nn.Module:
    # conv 3->4, k3, pad 1 on 8x8 (output 4x8x8 = 256 values), then a linear 256 -> 5
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))


def test_hand_computed_params_flops_and_shapes():
    s = summarize(_tiny(), (3, 8, 8), batch_size=1)
    conv_params, fc_params = 3 * 4 * 3 * 3 + 4, 256 * 5 + 5
    conv_macs, fc_macs = (3 * 3 * 3) * 4 * (8 * 8), 256 * 5  # per output value: k*k*C_in MACs
    assert s.total_params == s.trainable_params == conv_params + fc_params == 1397
    assert s.flops == 2 * (conv_macs + fc_macs) == 16384  # FLOPs = 2 x MACs
    assert [(r.name, r.type, r.output_shape, r.params, r.flops) for r in s.rows] == [
        ("0", "Conv2d", (4, 8, 8), conv_params, 2 * conv_macs),
        ("1", "ReLU", (4, 8, 8), 0, 0),
        ("2", "Flatten", (256,), 0, 0),
        ("3", "Linear", (5,), fc_params, 2 * fc_macs),
    ]


def test_hand_computed_memory():
    s = summarize(_tiny(), (3, 8, 8), batch_size=16, optimizer="adamw")
    weights = 1397 * 4
    assert s.weight_bytes == s.grad_bytes == weights
    assert s.optimizer_bytes == 2 * weights  # adam: exp_avg + exp_avg_sq
    # kept for backward: input 192 + conv 256 + relu 256 + flatten 256 + linear 5 values, fp32
    assert s.activation_bytes_per_image == (192 + 256 + 256 + 256 + 5) * 4
    assert s.inference_activation_bytes == (256 + 256) * 4  # the largest input+output pair
    assert s.training_bytes == 4 * weights + 16 * s.activation_bytes_per_image
    averaged = summarize(_tiny(), (3, 8, 8), batch_size=16, optimizer="adamw", weight_average=True)
    assert averaged.training_bytes == s.training_bytes + weights  # train.ema_decay: one more copy


@pytest.mark.parametrize("optimizer,momentum,slots", [("sgd", 0.0, 0), ("sgd", 0.9, 1), ("nesterov", 0.9, 1),
                                                      ("adam", 0.9, 2), ("rmsprop", 0.0, 1)])
def test_optimizer_state(optimizer, momentum, slots):
    s = summarize(_tiny(), (3, 8, 8), batch_size=1, optimizer=optimizer, momentum=momentum)
    assert s.optimizer_bytes == slots * 1397 * 4


def test_memory_ordering_is_sane():
    model = create_model("cnn", 43, 3, 32, width=8)
    fp32 = summarize(model, (3, 32, 32), batch_size=64)
    amp = summarize(model, (3, 32, 32), batch_size=64, amp=True)
    sgd = summarize(model, (3, 32, 32), batch_size=64, optimizer="sgd", momentum=0.0)
    assert fp32.inference_bytes < fp32.training_bytes_for(1) < fp32.training_bytes
    assert amp.activation_bytes_per_image == fp32.activation_bytes_per_image // 2
    assert amp.training_bytes < fp32.training_bytes
    assert sgd.training_bytes < fp32.training_bytes
    assert sum(r.params for r in fp32.rows) == fp32.total_params
    assert sum(r.flops for r in fp32.rows) == fp32.flops


def test_frozen_parameters_need_no_gradients_or_optimizer_state():
    model = create_model("timm/test_resnet", 5, 3, 32)
    full = summarize(model, (3, 32, 32), batch_size=8)
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("fc."))
    frozen = summarize(model, (3, 32, 32), batch_size=8)
    assert frozen.trainable_params == 5 * model.fc.in_features + 5 < full.trainable_params
    assert frozen.grad_bytes == frozen.trainable_params * 4
    assert frozen.training_bytes < full.training_bytes
    assert frozen.flops == full.flops > 0


def test_summarize_leaves_the_model_as_it_was():
    model = create_model("cnn", 5, 1, 8, width=4)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (1, 8, 8), batch_size=4)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_suggest_micro_batch_respects_the_budget():
    s = summarize(create_model("cnn", 10, 3, 32, width=8), (3, 32, 32), batch_size=128)
    budget = s.training_bytes_for(20) / 0.9  # room for 20 images, so 16 is the largest power of two
    micro, accum = suggest_micro_batch(s, budget, 128)
    assert (micro, accum) == (16, 8)
    assert s.training_bytes_for(micro) <= 0.9 * budget < s.training_bytes_for(2 * micro)
    assert suggest_micro_batch(s, 10**12, 128) == (128, 1)
    assert suggest_micro_batch(s, 10**12, 96) == (96, 1)  # the whole batch when it fits
    assert suggest_micro_batch(s, s.training_bytes_for(40) / 0.9, 96) == (32, 3)


def test_suggest_micro_batch_when_nothing_fits():
    s = summarize(_tiny(), (3, 8, 8), batch_size=1)
    with pytest.raises(ModelError, match="even with micro-batch 1"):
        suggest_micro_batch(s, 1000, 64)


@pytest.mark.parametrize("text,expected", [("8GiB", 8 * 2**30), ("512MB", 512 * 10**6), ("1.5G", int(1.5 * 2**30)),
                                           ("1024", 1024), (" 2 gb ", 2 * 10**9), ("64Mi", 64 * 2**20), (4096, 4096)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "8XB", "", "-1G", "0", "1.2.3G", "GiB"])
def test_parse_memory_rejects_bad_input(text):
    with pytest.raises(ValueError, match="--memory"):
        parse_memory(text)


def test_print_summary_shows_layers_and_totals():
    s = summarize(create_model("cnn", 10, 1, 8, width=4), (1, 8, 8), batch_size=32)
    s.suggestion, s.memory_budget = (32, 1), 2**30
    console = Console(record=True, width=160)
    print_summary(s, console)
    text = console.export_text()
    for expected in ["stages.0.conv1", "head.fc", "1x8x8", "FLOPs", "training, batch 32", "micro_batch_size=32"]:
        assert expected in text


def test_summarize_config_on_digits():
    cfg = RunConfig.model_validate({"model": {"width": 4}, "train": {"batch_size": 64}})
    s = summarize_config(cfg, memory="1GiB")
    assert isinstance(s, ModelSummary)
    assert s.input_shape == (1, 8, 8) and s.rows[-1].output_shape == (10,)
    assert s.suggestion == (64, 1)
    assert s.to_dict()["training_bytes"] == s.training_bytes
