"""save_onnx: a failed write leaves the old file and nothing beside it."""

from __future__ import annotations

import onnx
import pytest

from cnnsweep.export.onnx_export import save_onnx


def test_a_full_disk_leaves_the_old_model_and_no_temp_file(tiny_onnx, tmp_path, disk_full_after):
    proto = onnx.load(str(tiny_onnx))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    with pytest.raises(OSError), disk_full_after(1024):  # the tiny model is a few KiB
        save_onnx(proto, target)
    assert target.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    save_onnx(proto, target)
    assert onnx.load(str(target)).graph == proto.graph


@pytest.mark.parametrize("kw", [dict(grayscale=True, equalize="global", resize_to=12),
                                dict(equalize="clahe", resize_to=12)])
def test_the_file_reads_raw_pixels_of_any_size_as_training_does(tmp_path, kw):
    """Raw uint8 N x H x W x C in, the training preprocessing inside the graph (other sizes and CLAHE:
    the runner's pre-step first), logits equal to the PyTorch model on Preprocess's output."""
    import numpy as np
    import torch

    from cnnsweep.export import OnnxModelInfo, OnnxRunner, export_onnx
    from cnnsweep.transforms import Preprocess

    torch.manual_seed(0)
    c = 1 if kw.get("grayscale") else 3
    pre = Preprocess(source_size=(16, 16), source_channels=3, mean=(0.5,) * c, std=(0.25,) * c, **kw)
    model = torch.nn.Sequential(torch.nn.Conv2d(c, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 10 * 10, 5)).eval()
    runner = OnnxRunner.load(export_onnx(model, OnnxModelInfo(list("abcde"), pre), tmp_path / "m.onnx"))
    assert runner.info.pre_step is None if kw["equalize"] != "clahe" else "CLAHE" in runner.info.pre_step
    rng = np.random.default_rng(0)
    for shape in [(3, 16, 16, 3), (2, 12, 12, 3), (1, 30, 17, 3)]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        with torch.inference_mode():
            want = model(pre(torch.from_numpy(x).permute(0, 3, 1, 2))).numpy()
        np.testing.assert_allclose(runner.logits(x), want, atol=1e-4)
