"""Deconvolution: strongest neuron, projection confined to its receptive field, timm in-place ReLUs."""

from __future__ import annotations

import matplotlib.image
import timm
import torch

from cnnsweep.analysis.deconv import deconv_projection, save_deconv_figure, strongest_neurons
from cnnsweep.analysis.layers import stage_layers


def test_strongest_neurons_decodes_channel_row_col():
    acts = torch.zeros(2, 3, 4, 5)
    acts[0, 2, 1, 4] = 9.0
    acts[1, 0, 3, 0] = 1.0
    assert strongest_neurons(acts).tolist() == [[2, 1, 4], [0, 3, 0]]


def test_projection_stays_inside_the_receptive_field(tiny_rgb):
    model, pre, images = tiny_rgb
    x = pre(images)
    layer = stage_layers(model, x)[0]  # stages.0: 3x3 conv (pad 1) then 2x2 max pool
    proj, neurons = deconv_projection(model, x, layer)
    assert proj.shape == x.shape
    for p, (_, i, j) in zip(proj, neurons.tolist()):
        # pooled cell (i, j) covers input rows 2i..2i+1, the 3x3 conv one more on each side
        rows, cols = (p.abs().sum(0) > 0).nonzero(as_tuple=True)
        assert rows.numel() > 0
        assert 2 * i - 1 <= rows.min() and rows.max() <= 2 * i + 2
        assert 2 * j - 1 <= cols.min() and cols.max() <= 2 * j + 2


def test_timm_model_with_inplace_relu(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=4).eval()
    inplace = [m for m in model.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]
    from cnnsweep.transforms import Preprocess

    pre = Preprocess(source_size=(32, 32), source_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    path, info = save_deconv_figure(model, pre, images, tmp_path / "deconv.png")
    assert [d["layer"] for d in info] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert all(m.inplace for m in inplace)  # switched off for captum, restored after
    assert matplotlib.image.imread(path)[..., :3].std() > 0.05
