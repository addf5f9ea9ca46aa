"""The spatial transformer (`model.stn`): identity at the start, learns a warp, trains, exports to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.export import OnnxRunner, export_checkpoint
from cnnsweep.models import ModelError
from cnnsweep.models.cnn import create_cnn
from cnnsweep.models.stn import SpatialTransformer

ARCH = dict(num_stages=2, width=8, convs_per_stage=1, head="flatten", head_hidden=16)


def test_at_initialisation_the_transformer_passes_the_image_through():
    torch.manual_seed(0)
    with_stn = create_cnn(10, 3, 32, stn=True, **ARCH).eval()
    plain = create_cnn(10, 3, 32, **ARCH).eval()
    plain.load_state_dict({k: v for k, v in with_stn.state_dict().items() if not k.startswith("stn.")})
    x = torch.randn(5, 3, 32, 32)
    assert torch.allclose(with_stn.stn(x), x, atol=1e-5)
    assert torch.allclose(with_stn(x), plain(x), atol=1e-5)


def test_the_loss_reaches_the_localization_net():
    model = create_cnn(10, 3, 32, stn=True, **ARCH)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8)).backward()
    assert model.stn.loc[-1].weight.grad.abs().sum() > 0  # the warp's parameters get a gradient


def test_a_learned_shift_moves_the_image():
    stn = SpatialTransformer(1, 8)
    with torch.no_grad():
        stn.loc[-1].bias.copy_(torch.tensor([1.0, 0, 0.25, 0, 1, 0]))  # sample 1 px (0.25 of the half-side) right
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    with torch.no_grad():
        y = stn(x)
    assert float(y[0, 0, 3, 3]) == pytest.approx(1.0, abs=1e-5) and float(y.sum()) == pytest.approx(1.0, abs=1e-5)


def test_images_too_small_for_it_are_refused():
    with pytest.raises(ModelError, match="at least 4 px"):
        create_cnn(10, 1, 2, stn=True, num_stages=1, width=4)


def test_the_stem_is_its_own_parameter_group():
    assert create_cnn(10, 3, 32, stn=True, **ARCH).group_matcher()["stem"] == r"^stn\."


@pytest.mark.slow
def test_a_trained_transformer_exports_and_onnx_matches_pytorch(tmp_path):
    cfg = validate_config({"name": "stn", "data": {"name": "digits", "val_fraction": 0.2},
                           "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1, "stn": True},
                           "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "amp": "off"}})
    hooks, dataset = LocalHooks(output=tmp_path / "run"), load_dataset(cfg.data)
    result = fit(cfg, dataset, hooks)
    assert result.metrics["val/acc"] > 0.3  # 10 classes: chance is 0.1
    lm = load_model_from_checkpoint(hooks.last_checkpoint)
    assert not torch.equal(lm.model.stn.loc[-1].weight, torch.zeros_like(lm.model.stn.loc[-1].weight))  # it learned
    report = export_checkpoint(hooks.last_checkpoint, tmp_path / "stn.onnx")  # raises when ORT disagrees
    assert report.verification["ok"] and report.verification["max_abs_diff"] <= 1e-4
    images = dataset.valid.images[:13]  # 13: not a verified batch size
    with torch.inference_mode():
        ref = lm.model(lm.preprocess(images)).numpy()  # the training code path
    np.testing.assert_allclose(OnnxRunner.load(report.onnx).logits(images.permute(0, 2, 3, 1).numpy()), ref, atol=1e-4)
