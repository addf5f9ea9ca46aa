"""Opening an .onnx file: nothing outside the file is read, and the metadata must describe the graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from cnnsweep.data.gtsrb_pickle import MAX_NUM_CLASSES
from cnnsweep.export import ExportError, OnnxRunner, load_session


def _save(proto, tmp_path, name="model.onnx"):
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def _make_external(tensor, location="secret.bin"):
    """Point `tensor` at bytes in a side file, as onnx.save(save_as_external_data=True) would."""
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(size)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _external_constant(name):
    value = helper.make_tensor(name, onnx.TensorProto.FLOAT, [4], np.ones(4, np.float32).tobytes(), raw=True)
    _make_external(value)
    return helper.make_node("Constant", [], [name], value=value)


def _initializer(proto):
    _make_external(next(t for t in proto.graph.initializer if t.name.endswith("head.fc.weight")))


def _constant_node(proto):
    proto.graph.node.insert(0, _external_constant("leak"))


def _inside_a_subgraph(proto):
    branch = helper.make_graph([_external_constant("leak")], "branch", [],
                               [helper.make_tensor_value_info("leak", onnx.TensorProto.FLOAT, [4])])
    proto.graph.node.append(helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch))


def _location_only(proto):  # external_data entries without the EXTERNAL flag: ORT may still follow them
    tensor = next(t for t in proto.graph.initializer if t.name.endswith("head.fc.weight"))
    _make_external(tensor)
    tensor.data_location = onnx.TensorProto.DEFAULT


@pytest.mark.parametrize("plant", [_initializer, _constant_node, _inside_a_subgraph, _location_only])
def test_a_model_that_names_external_data_is_refused_before_any_session(tiny_onnx, tmp_path, plant):
    proto = onnx.load(str(tiny_onnx))
    plant(proto)
    (tmp_path / "secret.bin").write_bytes(b"s3cret-token-of-the-server-host-000000000000000")  # 48 bytes
    path = _save(proto, tmp_path)
    for source in (path, path.read_bytes()):
        with pytest.raises(ExportError, match="external data"):
            OnnxRunner.load(source)
    with pytest.raises(ExportError, match="external data"):
        load_session(path)


def test_the_runner_reads_raw_pixels_of_any_size_and_channels(tiny_onnx):
    runner = OnnxRunner.load(tiny_onnx, num_threads=1)
    assert runner.info.class_names == ["a", "b", "c"] and runner.info.input_shape == (1, 8, 8)
    assert runner.channels == runner.info.input_channels == 1
    assert runner.logits(np.zeros((2, 8, 8, 1), np.uint8)).shape == (2, 3)
    rgba = np.random.default_rng(0).integers(0, 256, (3, 20, 11, 4), dtype=np.uint8)  # converted, then resized
    assert runner.logits(rgba).shape == (3, 3)
    parts = [np.zeros((1, 8, 8, 1), np.uint8), rgba, np.full((2, 8, 8, 1), 9, np.uint8)]
    together = runner.logits_of(parts)  # grouped by shape, answered in order
    np.testing.assert_allclose(together, np.concatenate([runner.logits(p) for p in parts]), atol=1e-6)
    with pytest.raises(ValueError, match="uint8 N x H x W x C"):
        runner.logits(np.zeros((2, 1, 8, 8), np.float32))


def test_a_runner_pickles_without_its_session(tiny_onnx):
    import pickle

    runner = OnnxRunner.load(tiny_onnx, num_threads=1)
    x = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    copy = pickle.loads(pickle.dumps(runner))
    assert copy._session is None
    np.testing.assert_array_equal(copy.logits(x), runner.logits(x))


def test_a_file_from_the_float_input_format_is_refused_with_what_to_do(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    next(p for p in proto.metadata_props if p.key == "cnnsweep.format").value = json.dumps("cnnsweep-onnx/1")
    with pytest.raises(ExportError, match="re-export it"):
        load_session(_save(proto, tmp_path))


def _with_metadata(proto, **changes):
    for prop in proto.metadata_props:
        key = prop.key.removeprefix("cnnsweep.")
        if key in changes:
            prop.value = json.dumps(changes[key])
    return proto


def _preprocess(proto, **changes):
    pre = json.loads(next(p.value for p in proto.metadata_props if p.key == "cnnsweep.preprocess"))
    return {**pre, **changes}


@pytest.mark.parametrize("change, words", [
    (lambda p: _with_metadata(p, class_names=["a", "b", "c", "d"], num_classes=4), "4 classes.*3"),
    (lambda p: _with_metadata(p, model_input_shape=[1, 16, 16]), r"model_input_shape \[1, 16, 16\].*\[1, 8, 8\]"),
    (lambda p: _with_metadata(p, preprocess=_preprocess(p, image_size=16), model_input_shape=[1, 16, 16],
                              image_size=[16, 16]), r"input H x W x C \(16, 16, 1\).*graph's input"),
    (lambda p: _with_metadata(p, preprocess=_preprocess(p, source_channels=3, grayscale=True), input_channels=3),
     r"\(8, 8, 3\).*graph's input"),
    (lambda p: _with_metadata(p, num_classes=4), "num_classes 4.*3 class names"),
    (lambda p: _with_metadata(p, input_channels=3), "input_channels 3"),
    (lambda p: _with_metadata(p, image_size=[9, 9]), r"image_size \[9, 9\]"),
])
def test_metadata_that_does_not_describe_the_graph_is_refused(tiny_onnx, tmp_path, change, words):
    path = _save(change(onnx.load(str(tiny_onnx))), tmp_path)
    with pytest.raises(ExportError, match=words) as err:
        load_session(path)
    assert "\n" not in str(err.value)


def test_a_graph_with_other_inputs_or_outputs_is_refused(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7
    with pytest.raises(ExportError, match="3 classes.*7"):
        load_session(_save(proto, tmp_path))
    proto = onnx.load(str(tiny_onnx))
    proto.graph.input[0].name = "pixels"
    with pytest.raises(ExportError, match="input"):
        load_session(_save(proto, tmp_path))
    proto = onnx.load(str(tiny_onnx))
    proto.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    with pytest.raises(ExportError, match="uint8"):
        load_session(_save(proto, tmp_path))


@pytest.mark.parametrize("change, words", [
    (lambda p: _with_metadata(p, class_names=[str(i) for i in range(MAX_NUM_CLASSES + 1)],
                              num_classes=MAX_NUM_CLASSES + 1), "classes"),
    (lambda p: _with_metadata(p, class_names=[]), "classes"),
    (lambda p: _with_metadata(p, class_names="abc"), "class_names"),
    (lambda p: _with_metadata(p, preprocess=_preprocess(p, image_size=1_000_000)), "image size"),
    (lambda p: _with_metadata(p, preprocess=_preprocess(p, source_size=[1_000_000, 8])), "image size"),
])
def test_sizes_in_the_metadata_are_bounded_before_anything_is_allocated(tiny_onnx, tmp_path, change, words):
    with pytest.raises(ExportError, match=words):
        load_session(_save(change(onnx.load(str(tiny_onnx))), tmp_path))


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model at all")
    with pytest.raises(ExportError, match="ONNX"):
        load_session(tmp_path / "junk.onnx")
