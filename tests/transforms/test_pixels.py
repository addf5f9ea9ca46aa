"""The preprocessing inside an exported graph is the training preprocessing: PixelPipeline on raw
N x H x W x C pixels equals Preprocess.normalize(Preprocess.prepare(...)) on the same images, exactly."""

from __future__ import annotations

import pytest
import torch

from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.pixels import PixelPipeline, split_for_graph


def _pre(**kw) -> Preprocess:
    base = dict(source_size=(16, 16), source_channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    if kw.get("grayscale") or kw.get("source_channels") == 1:
        base.update(mean=(0.45,), std=(0.22,))
    return Preprocess(**{**base, **kw})


def _images(n=6, c=3, h=16, w=16) -> torch.Tensor:
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))
    x[0] //= 4  # a dark image: equalization stretches it
    x[1] = 77  # a flat one: equalization leaves it as it is
    return x


@pytest.mark.parametrize("kw", [{}, {"grayscale": True}, {"equalize": "global"},
                                {"grayscale": True, "equalize": "global"}, {"resize_to": 12},
                                {"resize_to": 24, "equalize": "global"}, {"source_channels": 1},
                                {"standardize": False, "mean": (0.0,) * 3, "std": (1.0,) * 3}])
def test_pixel_pipeline_is_the_training_preprocessing(kw):
    pre = _pre(**kw)
    pre_step, in_graph = split_for_graph(pre)
    assert pre_step is None and in_graph.source_size == pre.output_size
    x = _images(c=pre.source_channels, h=pre.output_size[0], w=pre.output_size[1])  # at the model's size
    with torch.inference_mode():
        got = PixelPipeline(in_graph)(x.permute(0, 2, 3, 1))
        want = pre(x)
    assert got.shape == want.shape and torch.equal(got, want)
    if pre.resize_to:
        with pytest.raises(ValueError, match="split_for_graph"):
            PixelPipeline(pre)


def test_clahe_splits_into_a_python_pre_step_and_a_graph_that_normalizes():
    pre = _pre(equalize="clahe", resize_to=12)
    pre_step, in_graph = split_for_graph(pre)
    assert pre_step.equalize == "clahe" and not pre_step.standardize
    assert in_graph.equalize == "none" and in_graph.source_size == (12, 12) and in_graph.mean == pre.mean
    x = _images()
    with torch.inference_mode():
        got = PixelPipeline(in_graph)(pre_step.prepare(x).permute(0, 2, 3, 1))
        assert torch.equal(got, pre(x))
    with pytest.raises(ValueError, match="split_for_graph"):
        PixelPipeline(pre)
    assert split_for_graph(_pre()) == (None, _pre())
    assert split_for_graph(_pre(resize_to=12))[1] == _pre(source_size=(12, 12))
