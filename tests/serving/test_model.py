"""Loading a served model: a file that names external data, or whose metadata does not describe its
graph, is refused with one line before any request is answered."""

from __future__ import annotations

import onnx
import pytest

from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ModelSpec, ServeConfigError


def _planted(tiny_onnx, tmp_path, edit):
    proto = onnx.load(str(tiny_onnx))
    edit(proto)
    (tmp_path / "secret.bin").write_bytes(b"s3cret" * 8)  # what ORT would read into the weights
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    return ModelSpec(path=str(tmp_path / "m.onnx"))


def _external_weights(proto):
    tensor = next(t for t in proto.graph.initializer if t.name == "head.fc.weight")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": "secret.bin", "offset": "0", "length": "48"}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _more_logits_than_class_names(proto):
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7


@pytest.mark.parametrize("edit, words", [(_external_weights, "external data"),
                                         (_more_logits_than_class_names, "3 classes")])
def test_an_untrustworthy_model_file_is_not_served(tiny_onnx, tmp_path, edit, words):
    with pytest.raises(ServeConfigError, match=words) as err:
        load_served_model(_planted(tiny_onnx, tmp_path, edit), num_threads=1)
    assert "\n" not in str(err.value)
