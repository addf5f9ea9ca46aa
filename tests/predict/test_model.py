"""`cnnsweep predict MODEL.onnx`: a file that names external data, or whose metadata does not describe its
graph, is refused with one line before any image is predicted."""

from __future__ import annotations

import onnx
import pytest

from cnnsweep.predict import PredictError, load_predictor


def _planted(tiny_onnx, tmp_path, edit):
    proto = onnx.load(str(tiny_onnx))
    edit(proto)
    (tmp_path / "secret.bin").write_bytes(b"s3cret" * 8)  # what ORT would read into the weights
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    return tmp_path / "m.onnx"


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
def test_an_untrustworthy_model_file_predicts_nothing(tiny_onnx, tmp_path, edit, words):
    with pytest.raises(PredictError, match=words) as err:
        load_predictor(_planted(tiny_onnx, tmp_path, edit), num_threads=1)
    assert "\n" not in str(err.value)
