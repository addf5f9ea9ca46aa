"""torchvision/<arch>: torchvision's classification models, built offline, heads and stems adapted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnsweep.config import ConfigError, ModelConfig, TorchvisionModelConfig, validate_config
from cnnsweep.models import ModelError, build_model, classifier_param_names, create_model
from cnnsweep.models.availability import model_problem
from cnnsweep.models.freeze import classifier_module

REAL_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights" / "squeezenet1_1.in1k.pth"
needs_weights = pytest.mark.skipif(not REAL_WEIGHTS.is_file(),
                                   reason=f"real ImageNet weights not present at {REAL_WEIGHTS}")


def test_config_section_is_the_torchvision_family():
    cfg = validate_config({"model": {"name": "torchvision/squeezenet1_1", "pretrained": True}})
    assert isinstance(cfg.model, TorchvisionModelConfig) and cfg.model.family_args() == {}
    assert isinstance(ModelConfig(name="torchvision/resnet18"), TorchvisionModelConfig)
    with pytest.raises(ConfigError, match=r"model.num_stages: not a field of torchvision models"):
        validate_config({"model": {"name": "torchvision/resnet18", "num_stages": 3}})


@pytest.mark.parametrize("arch, head", [("squeezenet1_1", "classifier.1"), ("resnet18", "fc"),
                                        ("mobilenet_v3_small", "classifier.3")])
def test_head_replaced_for_the_dataset(arch, head):
    model = create_model(f"torchvision/{arch}", 10, 3, 64).eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    name, module = classifier_module(model)
    assert name == head and dict(model.named_modules())[head] is module
    assert classifier_param_names(model) == {f"{head}.weight", f"{head}.bias"}


def test_grayscale_stem_built_for_one_channel():
    model = create_model("torchvision/squeezenet1_1", 4, 1, 32).eval()
    assert model.features[0].in_channels == 1
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 4)


def test_unknown_arch_and_missing_weights_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"unknown torchvision model 'not_a_net'"):
        create_model("torchvision/not_a_net", 10)
    assert "unknown torchvision model" in model_problem("torchvision/fasterrcnn_resnet50_fpn", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: nothing found, nothing downloaded
    with pytest.raises(ModelError, match=r"model.weights"):
        create_model("torchvision/squeezenet1_1", 10, pretrained=True)
    assert "model.weights" in model_problem("torchvision/squeezenet1_1", True)


def test_mismatched_file_names_the_file(tmp_path):
    bad = tmp_path / "resnet.pth"
    torch.save(create_model("torchvision/resnet18", 1000).state_dict(), bad)
    with pytest.raises(ModelError, match=r"resnet.pth does not match"):
        create_model("torchvision/squeezenet1_1", 10, pretrained=True, weights=str(bad))


def test_same_class_count_keeps_the_file_head(tmp_path):
    src = create_model("torchvision/squeezenet1_1", 1000)
    path = tmp_path / "sq.pth"
    torch.save(src.state_dict(), path)
    model = create_model("torchvision/squeezenet1_1", 1000, pretrained=True, weights=str(path))
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items())


def test_new_linear_head_on_loaded_weights_starts_at_zero(tmp_path):
    torch.save(create_model("torchvision/resnet18", 1000).state_dict(), tmp_path / "r.pth")
    model = create_model("torchvision/resnet18", 10, pretrained=True, weights=str(tmp_path / "r.pth"))
    assert model.fc.out_features == 10 and not model.fc.weight.any() and not model.fc.bias.any()
    assert create_model("torchvision/resnet18", 10).fc.weight.any()  # from scratch: torchvision's own init


@needs_weights
@pytest.mark.parametrize("channels", [3, 1])
def test_real_squeezenet_loads_strictly(channels):
    saved = torch.load(REAL_WEIGHTS, map_location="cpu", weights_only=True)
    cfg = ModelConfig(name="torchvision/squeezenet1_1", pretrained=True, weights=str(REAL_WEIGHTS))
    model = build_model(cfg, 10, channels, 64).eval()
    own = model.state_dict()
    assert set(own) == set(saved)
    for k, v in own.items():
        if k.startswith("classifier.1."):
            assert v.shape[0] == 10  # fresh head for 10 classes
            assert k.endswith("bias") or v.std() > 0  # a ReLU follows this conv head: zero would pass no gradient
        elif k == "features.0.weight" and channels == 1:
            assert torch.allclose(v, saved[k].sum(dim=1, keepdim=True))  # timm's adapt_input_conv
        else:
            assert torch.equal(v, saved[k]), k
    assert model(torch.rand(2, channels, 64, 64)).shape == (2, 10)


@needs_weights
def test_real_squeezenet_freezes_its_backbone():
    cfg = ModelConfig(name="torchvision/squeezenet1_1", pretrained=True, weights=str(REAL_WEIGHTS),
                      freeze="backbone")
    model = build_model(cfg, 10, 3, 64)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.1.weight", "classifier.1.bias"}


def test_head_finder_covers_common_torchvision_heads():
    import torchvision

    for arch in ("vgg11", "convnext_tiny", "vit_b_16", "efficientnet_b0", "densenet121", "swin_t"):
        with torch.device("meta"):  # structure only: no memory, no initialisation time
            model = torchvision.models.get_model(arch, weights=None, num_classes=1000)
        name, module = classifier_module(model)
        assert isinstance(module, nn.Linear) and module.out_features == 1000, arch
