"""Optimizer parameter groups: no weight decay on normalisation and bias parameters."""

from __future__ import annotations

import pytest

from cnnsweep.config import ModelConfig, OptimConfig
from cnnsweep.engine.optim import build_optimizer, split_weight_decay
from cnnsweep.models import create_model, param_groups


@pytest.mark.parametrize("name,weights", [("cnn", False), ("timm/test_resnet", True)])
def test_norm_and_bias_parameters_get_no_weight_decay(name, weights, tmp_path):
    model = create_model(name, 5, 3, 32)
    cfg = ModelConfig(name=name, weights=str(tmp_path / "w.pth") if weights else None)  # head/backbone groups
    groups = split_weight_decay(model, param_groups(model, cfg, 0.1, 0.5), 5e-4)
    opt = build_optimizer(groups, OptimConfig(name="sgd", weight_decay=5e-4), 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay.keys() == set(names.values())  # every parameter exactly once
    for n, p in model.named_parameters():
        expected = 0.0 if p.ndim <= 1 else 5e-4  # BatchNorm weight/bias and every layer's bias are 1-D
        assert decay[n] == expected, n
    assert any(decay[n] == 0 for n in decay if "bn" in n or "norm" in n)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}  # halves of a group keep its name and lr
    assert lrs == ({"head": 0.1, "backbone": 0.05} if weights else {"all": 0.1})
