"""Freezing (backbone / first N stages) and optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from cnnsweep.config import ModelConfig
from cnnsweep.models import (ModelError, apply_freeze, build_model, create_model, param_groups,
                             stage_param_names)

ARCH = "timm/test_resnet"


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _prefixes(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_freeze_backbone_leaves_only_the_classifier():
    model = build_model(ModelConfig(name=ARCH, freeze="backbone"), 5, 3, 32)
    assert _trainable(model) == {"fc.weight", "fc.bias"}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("fc."))
    assert model.fc.weight.grad is not None


@pytest.mark.parametrize("n,frozen", [(0, set()), (1, {"conv1", "bn1", "layer1"}),
                                      (2, {"conv1", "bn1", "layer1", "layer2"})])
def test_freeze_stages_is_stem_plus_first_n_layers(n, frozen):
    model = build_model(ModelConfig(name=ARCH, freeze="stages", freeze_stages=n), 5, 3, 32)
    all_names = {name for name, _ in model.named_parameters()}
    assert _prefixes(all_names - _trainable(model)) == frozen
    assert {"fc.weight", "fc.bias"} <= _trainable(model)


def test_resnet_stages_come_from_timm_groups():
    stem, stages = stage_param_names(create_model(ARCH, 5))
    assert _prefixes(set(stem)) == {"conv1", "bn1"}
    assert [_prefixes(set(s)) for s in stages] == [{"layer1"}, {"layer2"}, {"layer3"}, {"layer4"}]


def test_cnn_stages_have_no_stem():
    model = build_model(ModelConfig(num_stages=3, width=4, freeze="stages", freeze_stages=1), 5, 1, 8)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("stages.0.") for n in frozen)
    assert all(p.requires_grad for p in model.stages[1].parameters())


def test_module_order_fallback_without_group_matcher():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 8, 8))  # materialise the lazy head
    stem, stages = stage_param_names(model)
    assert stem == [] and stages == [["0.weight", "0.bias"], ["1.weight", "1.bias"]]
    apply_freeze(model, "stages", 1)
    assert _trainable(model) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_too_many_stages_and_stray_freeze_stages_are_errors():
    with pytest.raises(ModelError, match="has 4 stages"):
        build_model(ModelConfig(name=ARCH, freeze="stages", freeze_stages=5), 5, 3, 32)
    with pytest.raises(ModelError, match="only applies with model.freeze=stages"):
        build_model(ModelConfig(freeze="backbone", freeze_stages=2), 5, 3, 32)


def test_frozen_batch_norm_keeps_its_running_stats_in_train_mode():
    model = build_model(ModelConfig(name=ARCH, freeze="stages", freeze_stages=1), 5, 3, 32)
    frozen_bn, live_bn = model.layer1[0].bn1, model.layer3[0].bn1
    before = frozen_bn.running_mean.clone(), live_bn.running_mean.clone()
    model.train()
    model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(frozen_bn.running_mean, before[0])
    assert not torch.equal(live_bn.running_mean, before[1])
    fresh = create_model(ARCH, 5)  # same state_dict keys as an unfrozen model
    fresh.load_state_dict(model.state_dict())


def test_param_groups_from_scratch_is_one_group():
    for cfg in [ModelConfig(width=4), ModelConfig(name=ARCH)]:
        model = build_model(cfg, 5, 3, 32)
        groups = param_groups(model, cfg, lr=0.1, backbone_lr_scale=0.1)
        assert len(groups) == 1 and groups[0]["lr"] == 0.1
        assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_param_groups_fine_tuning_scales_backbone_and_skips_frozen(tmp_path):
    save_file(create_model(ARCH, 7).state_dict(), str(tmp_path / "w.safetensors"))
    cfg = ModelConfig(name=ARCH, pretrained=True, weights=str(tmp_path / "w.safetensors"),
                      freeze="stages", freeze_stages=2)
    model = build_model(cfg, 5, 3, 32)
    groups = {g["name"]: g for g in param_groups(model, cfg, lr=0.01, backbone_lr_scale=0.1)}
    assert groups["head"]["lr"] == 0.01
    assert groups["backbone"]["lr"] == pytest.approx(0.001)
    assert {id(p) for p in groups["head"]["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    in_groups = {id(p) for g in groups.values() for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}
    torch.optim.AdamW(list(groups.values()))  # accepted as optimizer groups


def test_param_groups_give_the_spatial_transformer_its_own_rate(tmp_path):
    cfg = ModelConfig(width=4, stn=True)
    model = build_model(cfg, 5, 3, 32)
    groups = {g["name"]: g for g in param_groups(model, cfg, lr=0.01, backbone_lr_scale=0.5, stn_lr_scale=0.1)}
    assert set(groups) == {"all", "stn"}
    assert groups["all"]["lr"] == 0.01 and groups["stn"]["lr"] == pytest.approx(0.001)
    assert {id(p) for p in groups["stn"]["params"]} == {id(p) for p in model.stn.parameters()}
    assert len(groups["all"]["params"]) + len(groups["stn"]["params"]) == len(list(model.parameters()))
    # fine-tuning loaded weights: the transformer's rate scales the backbone's, the head keeps lr
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    tuned = ModelConfig(width=4, stn=True, weights=str(tmp_path / "w.safetensors"))
    model = build_model(tuned, 5, 3, 32)
    groups = {g["name"]: g["lr"] for g in param_groups(model, tuned, 0.01, 0.5, 0.1)}
    assert groups == pytest.approx({"head": 0.01, "backbone": 0.005, "stn": 0.0005})
    # no transformer: the scale changes nothing
    plain = ModelConfig(width=4)
    assert [g["name"] for g in param_groups(build_model(plain, 5, 3, 32), plain, 0.01, 0.5, 0.1)] == ["all"]


def test_param_groups_with_everything_frozen_is_an_error():
    cfg = ModelConfig(width=4)
    model = build_model(cfg, 5, 3, 32)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ModelError, match="no trainable"):
        param_groups(model, cfg, 0.1, 0.1)


def test_backbone_warmup_freezes_then_restores_only_what_it_froze():
    from cnnsweep.models import BackboneWarmup

    model = build_model(ModelConfig(name=ARCH, freeze="stages", freeze_stages=1), 5, 3, 32)
    stage_frozen = {n for n, _ in model.named_parameters()} - _trainable(model)
    warmup = BackboneWarmup(model, epochs=2)
    assert warmup.set_epoch(0) and _trainable(model) == {"fc.weight", "fc.bias"}
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert not model.layer4[0].bn1.training  # frozen BN keeps its running statistics
    assert not warmup.set_epoch(1)  # same phase: nothing to do
    assert warmup.set_epoch(2)
    assert {n for n, _ in model.named_parameters()} - _trainable(model) == stage_frozen
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert model.layer4[0].bn1.training  # its pin is gone
    assert not model.bn1.training  # the stem stays frozen (model.freeze=stages), pinned


def test_freeze_epochs_with_a_frozen_backbone_is_refused():
    from cnnsweep.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="model.freeze_epochs"):
        validate_config({"model": {"name": ARCH, "freeze": "backbone", "freeze_epochs": 2}})
