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
