"""stage_layers / gradcam_layer: the custom CNN, a timm CNN, a ViT and a plain nn.Sequential."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from cnnsweep.analysis.layers import gradcam_layer, stage_layers
from cnnsweep.models import CNN


def test_custom_cnn_stages_come_from_feature_info():
    model = CNN(num_classes=3, in_channels=1, image_size=8, num_stages=4, width=4).eval()
    names = [n for n, _ in stage_layers(model, torch.randn(1, 1, 8, 8))]
    assert names == ["stages.0", "stages.1", "stages.2", "stages.3"]
    # 8 -> 4 -> 2 -> 1 -> 1: the last two stages are 1x1, so Grad-CAM uses stages.1 (2x2)
    assert gradcam_layer(model, torch.randn(1, 1, 8, 8))[0] == "stages.1"


def test_timm_cnn_uses_its_feature_info():
    model = timm.create_model("test_resnet", num_classes=4).eval()
    names = [n for n, _ in stage_layers(model, torch.randn(1, 3, 64, 64))]
    assert names == [d["module"] for d in model.feature_info]
    assert gradcam_layer(model, torch.randn(1, 3, 64, 64))[0] == "layer4"  # 2x2 at 64 px


def test_model_without_feature_info_falls_back_to_last_conv_per_resolution():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.MaxPool2d(2),
                          nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    assert [n for n, _ in stage_layers(model, torch.randn(1, 1, 8, 8))] == ["1", "3"]


def test_vit_has_no_conv_stage():
    model = timm.create_model("test_vit", num_classes=4, img_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    assert stage_layers(model, x) == []  # its blocks output tokens, not feature maps
    with pytest.raises(ValueError, match="no convolutional stage"):
        gradcam_layer(model, x)
