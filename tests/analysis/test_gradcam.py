"""Grad-CAM: maps in 0..1 at input size that light up where a hand-built model finds its evidence; gallery."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch
from torch import nn

from cnnsweep.analysis.gradcam import gradcam_maps, save_gradcam_gallery


class _BlobNet(nn.Module):
    """One conv channel that copies the input (ReLU'd), global average pool, class 0 = brightness."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
        self.stages = nn.Sequential(nn.Sequential(conv, nn.ReLU()), nn.MaxPool2d(2))
        self.feature_info = [{"module": "stages.0", "num_chs": 1, "reduction": 1}]
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.stages(x).mean((2, 3)))


def test_maps_are_in_range_and_light_up_where_the_evidence_is():
    model = _BlobNet().eval()
    x = torch.zeros(2, 1, 16, 16)
    x[0, :, 2:5, 10:13] = 1.0  # top right: rows 2-4, cols 10-12 (asymmetric: a transpose would show)
    x[1, :, 11:14, 1:4] = 1.0  # bottom left
    cams = gradcam_maps(model, x, torch.tensor([0, 0]))
    assert cams.shape == (2, 16, 16) and cams.min() >= 0 and cams.max() == 1
    assert cams[0, 2:5, 10:13].mean() > 0.5 and cams[0, 8:, :8].max() < 0.05
    assert cams[1, 11:14, 1:4].mean() > 0.5 and cams[1, :8, 8:].max() < 0.05
    # class 1's score falls with brightness: no positive evidence anywhere -> an empty map
    assert gradcam_maps(model, x, torch.tensor([1, 1])).max() == 0


def test_gallery_png(tiny_rgb, tmp_path):
    model, pre, images = tiny_rgb
    path = save_gradcam_gallery(model, pre, images[:3], [0, 1, 2], [4, 3, 2], [0.9, 0.5, 0.31],
                                ["zero", "one", "two", "three", "a rather long class name"],
                                tmp_path / "g.png")
    assert matplotlib.image.imread(path)[..., :3].std() > 0.05


def test_gallery_rejects_mismatched_lengths(tiny_rgb, tmp_path):
    model, pre, images = tiny_rgb
    with pytest.raises(ValueError, match="same non-zero length"):
        save_gradcam_gallery(model, pre, images[:3], [0, 1], [1, 0], [0.5, 0.5], list("abcde"), tmp_path / "g.png")
