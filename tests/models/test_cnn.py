"""The custom CNN family: every option builds, trains one step, and has the documented layout."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

from cnnsweep.models import CNN, ModelError, create_model
from cnnsweep.models.cnn import ACTIVATIONS, MAX_WIDTH, POOLINGS, stage_widths

SHAPES = [(1, 8), (1, 28), (3, 32), (3, 64)]  # digits, MNIST, GTSRB, AHE: (channels, side)


def _step(model: nn.Module, channels: int, side: int, num_classes: int = 5) -> None:
    """One forward + backward: right logits shape, every parameter gets a finite gradient."""
    torch.manual_seed(0)
    x = torch.randn(3, channels, side, side)
    y = torch.arange(3) % num_classes
    model.train()
    logits = model(x)
    assert logits.shape == (3, num_classes)
    nn.functional.cross_entropy(logits, y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"


@pytest.mark.parametrize("activation,batch_norm", list(itertools.product(ACTIVATIONS, [True, False])))
def test_activation_and_batch_norm(activation, batch_norm):
    model = create_model("cnn", 5, 1, 8, width=4, convs_per_stage=2, activation=activation,
                         batch_norm=batch_norm)
    _step(model, 1, 8)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batch_norm
    expected_act = type(ACTIVATIONS[activation]())
    assert sum(isinstance(m, expected_act) for m in model.modules()) == 3 * 2  # stages x convs
    # conv bias only without BN (BN's shift makes it redundant)
    assert all((m.bias is None) == batch_norm for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("pooling,head,shape", list(itertools.product(POOLINGS, ["gap", "flatten"], SHAPES)))
def test_pooling_head_and_input_shapes(pooling, head, shape):
    channels, side = shape
    model = create_model("cnn", 5, channels, side, width=2, convs_per_stage=1, pooling=pooling, head=head)
    _step(model, channels, side)


@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_everywhere(shape):
    channels, side = shape
    model = create_model("cnn", 5, channels, side, width=2, convs_per_stage=1, dropout=0.4, head="flatten")
    _step(model, channels, side)
    drops2d = [m for m in model.stages.modules() if isinstance(m, nn.Dropout2d)]
    assert [m.p for m in drops2d] == [0.2] * 3  # half the head rate after each stage
    assert model.head.drop.p == 0.4
    model.eval()
    x = torch.randn(2, channels, side, side)
    assert torch.equal(model(x), model(x))  # dropout is off in eval


def test_no_dropout_layers_when_dropout_is_zero():
    model = create_model("cnn", 5, 1, 8)
    assert not any(isinstance(m, nn.Dropout2d) for m in model.modules())


def test_digits_downsample_to_one_pixel_and_stop():
    model = create_model("cnn", 10, 1, 8, num_stages=3, width=4)
    assert model.final_side == 1
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8]
    deeper = create_model("cnn", 10, 1, 8, num_stages=5, width=4, head="flatten")
    assert deeper.final_side == 1
    assert [f["reduction"] for f in deeper.feature_info] == [2, 4, 8, 8, 8]  # 1x1 is not pooled again
    assert sum(isinstance(m, nn.MaxPool2d) for m in deeper.modules()) == 3
    _step(deeper, 1, 8, num_classes=10)


@pytest.mark.parametrize("pooling,side,expected", [("max", 28, 3), ("avg", 28, 3), ("strided", 28, 4),
                                                    ("none", 28, 28), ("max", 64, 8)])
def test_final_side_matches_the_real_feature_map(pooling, side, expected):
    model = create_model("cnn", 5, 1, side, width=2, convs_per_stage=1, pooling=pooling)
    assert model.final_side == expected
    assert model.forward_features(torch.zeros(1, 1, side, side)).shape[-1] == expected


def test_strided_pooling_uses_a_stride_two_last_conv():
    model = create_model("cnn", 5, 3, 32, width=4, convs_per_stage=3, pooling="strided")
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    for stage in model.stages:
        assert [stage.conv1.stride, stage.conv2.stride, stage.conv3.stride] == [(1, 1), (1, 1), (2, 2)]


def test_feature_info_matches_stage_outputs():
    model = create_model("cnn", 5, 3, 32, num_stages=4, width=8)
    x = torch.zeros(1, 3, 32, 32)
    for info, stage in zip(model.feature_info, model.stages):
        x = stage(x)
        assert x.shape[1] == info["num_chs"]
        assert 32 // x.shape[-1] == info["reduction"]
    assert model.get_classifier() is model.head.fc


def test_width_doubles_and_is_capped():
    assert stage_widths(3, 32) == [32, 64, 128]
    assert stage_widths(6, 128) == [128, 256, 512, 512, 512, 512]
    assert stage_widths(2, 1024) == [1024, 1024]  # a width above the cap is kept, not cut
    model = create_model("cnn", 5, 3, 32, num_stages=6, width=128, convs_per_stage=1)
    assert model.num_features == MAX_WIDTH


def test_flatten_head_size_follows_the_feature_map():
    model = create_model("cnn", 7, 3, 32, num_stages=2, width=4, head="flatten")
    assert model.head.fc.in_features == 8 * 8 * 8  # 8 channels x 8 x 8 after two poolings


def test_flatten_head_that_would_be_huge_is_refused():
    with pytest.raises(ModelError, match="head=gap"):
        create_model("cnn", 1000, 3, 224, num_stages=1, width=64, convs_per_stage=1,
                     pooling="none", head="flatten")


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_init_keeps_activations_alive_without_batch_norm(activation):
    """12 convs without BN: the last pre-activation keeps a usable scale. torch's default conv init
    gives ~0.01 here (measured), so this fails if the activation-aware init is lost."""
    torch.manual_seed(0)
    model = create_model("cnn", 10, 3, 16, num_stages=4, width=32, convs_per_stage=3,
                         batch_norm=False, pooling="none", activation=activation)
    seen = {}
    model.stages[-1].conv3.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.no_grad():
        model(torch.randn(8, 3, 16, 16))
    assert 0.2 < seen["out"].std().item() < 10


@pytest.mark.parametrize("kwargs,match", [
    ({"pooling": "lp"}, "pooling"), ({"head": "attn"}, "head"), ({"activation": "swish"}, "activation"),
    ({"dropout": 1.0}, "dropout"), ({"kernel": 5}, "unknown argument"),
])
def test_bad_arguments_are_model_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        create_model("cnn", 5, 3, 32, **kwargs)


def test_is_a_cnn_instance_with_timm_style_groups():
    model = create_model("cnn", 5, 3, 32)
    assert isinstance(model, CNN)
    assert model.group_matcher(coarse=True) == {"blocks": r"^stages\.(\d+)"}


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_head_hidden_adds_one_fc_layer_with_activation_and_dropout(head):
    model = create_model("cnn", 43, 3, 32, width=8, num_stages=3, dropout=0.3, head=head, head_hidden=256)
    _step(model, 3, 32, num_classes=43)
    in_features = 32 * (16 if head == "flatten" else 1)  # 32 channels at 4x4 (flatten) or 1x1 (gap)
    assert (model.head.hidden.in_features, model.head.hidden.out_features) == (in_features, 256)
    assert model.get_classifier() is model.head.fc and model.head.fc.in_features == 256
    assert isinstance(model.head.hidden_act, nn.ReLU) and model.head.hidden_drop.p == 0.3
    # Kaiming init for the hidden layer (it feeds a ReLU), small weights only for the logits layer
    assert model.head.hidden.weight.std().item() == pytest.approx(1.415 / in_features ** 0.5, rel=0.1)
    assert model.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_no_hidden_layer_by_default():
    model = create_model("cnn", 5, 3, 32, width=4, head="flatten")
    assert [n for n, _ in model.head.named_children()] == ["flatten", "drop", "fc"]


def test_stage_dropout_overrides_half_the_head_rate():
    model = create_model("cnn", 5, 3, 32, width=4, dropout=0.3, stage_dropout=0.0)
    assert not any(isinstance(m, nn.Dropout2d) for m in model.modules())
    model = create_model("cnn", 5, 3, 32, width=4, dropout=0.0, stage_dropout=0.1)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout2d)] == [0.1] * 3


def test_head_hidden_and_stage_dropout_come_from_the_config():
    from cnnsweep.config import ModelConfig
    from cnnsweep.models import build_model

    cfg = ModelConfig(head="flatten", head_hidden=64, dropout=0.3, stage_dropout=0.0)
    model = build_model(cfg, 43, 3, 32)
    assert model.head.hidden.out_features == 64
    assert not any(isinstance(m, nn.Dropout2d) for m in model.modules())


@pytest.mark.parametrize("args, kwargs, match", [
    ((5, 3, 32), {"num_stages": 1, "width": 3500, "convs_per_stage": 2}, "conv parameters"),  # 110M weights
    ((5, 3, 32), {"head_hidden": 2_000_000}, "head_hidden"),  # 76M head weights
    ((10_001, 3, 32), {}, "num_classes"),
    ((5, 3, 1_000_000), {}, "image_size"),
])
def test_sizes_from_a_config_or_checkpoint_are_bounded_before_any_layer_is_allocated(args, kwargs, match):
    with pytest.raises(ModelError, match=match):
        create_model("cnn", *args, **kwargs)
