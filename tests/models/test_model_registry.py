"""Registry look-ups and building from ModelConfig."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnsweep.config import ModelConfig
from cnnsweep.models import ModelError, build_model, create_model, list_models, model_args, register_model


def test_list_models_names_every_family():
    assert list_models() == ["cnn", "timm/<name>", "torchvision/<name>"]


def test_unknown_name_lists_registered_models():
    with pytest.raises(ModelError, match=r"unknown model 'resnet'.*cnn, timm/<name>"):
        create_model("resnet", 10)


def test_unknown_timm_model_points_to_timm_list_models():
    with pytest.raises(ModelError, match=r"unknown timm model 'not_a_net'; see timm.list_models\(\)"):
        create_model("timm/not_a_net", 10)


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


def test_register_and_create_a_custom_model(monkeypatch):
    from cnnsweep.registry import MODELS

    MODELS.names()  # shipped entries loaded before the copy
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))

    @register_model("tiny")
    def tiny(num_classes, in_channels, image_size, hidden=3):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden),
                             nn.Linear(hidden, num_classes))

    model = create_model("tiny", 4, in_channels=1, image_size=5, hidden=7)
    assert model(torch.zeros(2, 1, 5, 5)).shape == (2, 4)
    assert model[1].out_features == 7
    assert "tiny" in list_models()
    with pytest.raises(ModelError, match="already registered"):
        register_model("tiny")(lambda **kw: None)


@pytest.mark.parametrize("num_classes,in_channels", [(0, 3), (10, 0)])
def test_bad_sizes_are_refused(num_classes, in_channels):
    with pytest.raises(ModelError):
        create_model("cnn", num_classes, in_channels)


def test_build_model_reads_every_cnn_field():
    cfg = ModelConfig(num_stages=2, width=6, convs_per_stage=3, batch_norm=False, dropout=0.2,
                      activation="elu", pooling="avg", head="flatten")
    model = build_model(cfg, num_classes=7, in_channels=1, image_size=28)
    assert len(model.stages) == 2
    assert [f["num_chs"] for f in model.feature_info] == [6, 12]
    assert len([m for m in model.stages[0] if isinstance(m, nn.Conv2d)]) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.ELU) for m in model.modules())
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())
    assert model.head.fc.in_features == 12 * 7 * 7
    assert model.head.drop.p == 0.2
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("cfg", [ModelConfig(width=4), ModelConfig(name="timm/test_resnet")])
def test_model_args_rebuild_the_same_architecture(cfg):
    built = build_model(cfg, 5, 1, 32)
    args = model_args(cfg, 5, 1, 32)
    rebuilt = create_model(**args)
    assert {k: v.shape for k, v in built.state_dict().items()} == \
           {k: v.shape for k, v in rebuilt.state_dict().items()}
    rebuilt.load_state_dict(built.state_dict())  # what load_model_from_checkpoint does
    assert "pretrained" not in args and "weights" not in args


def test_cnn_cannot_be_pretrained_without_a_file():
    with pytest.raises(ModelError, match="model.weights"):
        build_model(ModelConfig(pretrained=True), 5, 3, 32)


def test_cnn_weights_from_a_local_file(tmp_path):
    source = build_model(ModelConfig(width=4), 10, 1, 8)
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")  # cnnsweep layout
    model = build_model(ModelConfig(width=4, weights=str(tmp_path / "checkpoint.pt")), 4, 1, 8)
    assert torch.equal(model.stages[0].conv1.weight, source.stages[0].conv1.weight)
    assert model.head.fc.out_features == 4  # other classes: the head keeps its fresh init


def test_cnn_rgb_weights_adapt_to_one_channel_and_other_architectures_are_refused(tmp_path):
    from cnnsweep.models import load_weights

    source = build_model(ModelConfig(width=4), 10, 3, 8)
    torch.save(source.state_dict(), tmp_path / "rgb.pth")
    model = build_model(ModelConfig(width=4), 4, 1, 8)
    report = load_weights(model, tmp_path / "rgb.pth")
    assert report.adapted == ["stages.0.conv1.weight"] and report.skipped == ["head.fc.weight", "head.fc.bias"]
    torch.testing.assert_close(model.stages[0].conv1.weight, source.stages[0].conv1.weight.sum(1, keepdim=True))
    with pytest.raises(ModelError, match="does not match"):
        load_weights(build_model(ModelConfig(width=8), 4, 3, 8), tmp_path / "rgb.pth")
