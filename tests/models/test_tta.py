"""Test-time augmentation in the model's eval forward (`model.tta`): what it averages, when, and that every
path that reads a model (checkpoint rebuild, the exported graph, the explanations' hooks) gets it right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnsweep.config import CNNModelConfig, ConfigError, validate_config
from cnnsweep.models import CNN, ModelError, create_model, model_args
from cnnsweep.models.tta import single_view


def _cnn(tta: str = "hflip") -> CNN:
    torch.manual_seed(0)
    return create_model("cnn", 5, 3, 16, num_stages=2, width=4, tta=tta)


def test_eval_mode_averages_the_softmax_of_the_image_and_its_mirror():
    model, x = _cnn().eval(), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        got = model(x).softmax(1)
        with single_view(model):
            want = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
            assert not torch.allclose(model(x).softmax(1), want, atol=1e-4)  # the mirror changes the answer
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_training_sees_one_view():
    model, x = _cnn(), torch.randn(4, 3, 16, 16)
    plain = _cnn("none")
    model.train(), plain.train()
    torch.testing.assert_close(model(x), plain(x))  # same seed, same weights, BN on the same batch


def test_confident_logits_stay_finite():
    """The mean is taken in log space: a probability that underflows in one view leaves no -inf logit."""
    model = _cnn().eval()
    with torch.no_grad():
        model.head.fc.weight.mul_(1e4)
        out = model(torch.randn(4, 3, 16, 16))
    assert torch.isfinite(out).all()


def test_single_view_restores_the_mode_even_on_error():
    model = _cnn()
    with pytest.raises(RuntimeError), single_view(model):
        assert model.tta == "none"
        raise RuntimeError("boom")
    assert model.tta == "hflip"


def test_bad_values_are_refused_with_their_path():
    with pytest.raises(ModelError, match="unknown tta 'vflip'"):
        create_model("cnn", 5, 3, 16, tta="vflip")
    with pytest.raises(ConfigError, match=r"model\.tta"):
        validate_config({"model": {"name": "cnn", "tta": "vflip"}})


def test_a_checkpoint_rebuilds_the_averaging():
    args = model_args(CNNModelConfig(tta="hflip"), num_classes=5, in_channels=3, image_size=16)
    assert args["tta"] == "hflip" and create_model(**args).tta == "hflip"
    assert create_model(**{k: v for k, v in args.items() if k != "tta"}).tta == "none"  # older checkpoints


def test_the_exported_graph_averages_both_views(tmp_path):
    from cnnsweep.export import OnnxModelInfo, OnnxRunner, export_onnx
    from cnnsweep.transforms import Preprocess

    model = _cnn().eval()
    with torch.no_grad():
        model.head.fc.weight.mul_(100)  # an untrained net's tiny logits would hide the difference
    pre = Preprocess(source_size=(16, 16), source_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    runner = OnnxRunner.load(export_onnx(model, OnnxModelInfo(list("abcde"), pre), tmp_path / "m.onnx"))
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    with torch.inference_mode():
        want = model(pre(torch.from_numpy(x).permute(0, 3, 1, 2)))
        with single_view(model):
            one_view = model(pre(torch.from_numpy(x).permute(0, 3, 1, 2)))
    got = torch.from_numpy(runner.logits(x))
    torch.testing.assert_close(got.softmax(1), want.softmax(1), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got.softmax(1), one_view.softmax(1), atol=1e-3)


def test_explanations_hook_one_view_per_image():
    from cnnsweep.analysis.gradcam import gradcam_maps
    from cnnsweep.analysis.layers import capture_outputs, stage_layers

    model, x = _cnn().eval(), torch.randn(3, 3, 16, 16)
    outs = capture_outputs(model, stage_layers(model, x), x)
    assert {v.shape[0] for v in outs.values()} == {3}
    assert gradcam_maps(model, x, torch.tensor([0, 1, 2])).shape == (3, 16, 16)
    assert model.tta == "hflip"
