"""Feature maps: per-stage activations and one readable PNG grid per stage."""

from __future__ import annotations

import matplotlib.image
import torch

from cnnsweep.analysis.feature_maps import save_feature_map_grids, stage_activations, top_channels


def test_stage_activations_match_feature_info(tiny_rgb):
    model, pre, images = tiny_rgb
    acts = stage_activations(model, pre(images))
    assert list(acts) == ["stages.0", "stages.1", "stages.2"]
    for info, a in zip(model.feature_info, acts.values()):
        side = 16 // info["reduction"]
        assert a.shape == (4, info["num_chs"], side, side)
    # the last stage's output is what the head pools: same numbers as forward_features
    torch.testing.assert_close(acts["stages.2"], model.forward_features(pre(images)).detach())


def test_top_channels_ranks_by_mean_activation():
    acts = torch.zeros(2, 4, 3, 3)
    acts[:, 2] = 5.0
    acts[:, 0] = 1.0
    assert top_channels(acts, 2) == [2, 0]
    assert len(top_channels(acts, 10)) == 4


def test_grids_are_written_and_not_blank(tiny_rgb, tmp_path):
    model, pre, images = tiny_rgb
    figures = save_feature_map_grids(model, pre, images[:3], tmp_path, num_channels=4)
    assert [f["section"] for f in figures] == ["feature_maps"] * 3
    for f in figures:
        pixels = matplotlib.image.imread(f["path"])
        assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05  # a drawn grid, not a blank canvas
