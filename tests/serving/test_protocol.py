"""The request-handling pieces without Ray or HTTP: body guards, image decoding, OIP tensors, responses."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.config import ModelConfig
from cnnsweep.export import OnnxModelInfo, export_onnx
from cnnsweep.models import build_model
from cnnsweep.serving.body import json_depth, parse_json
from cnnsweep.serving.errors import HttpError
from cnnsweep.serving.images import decode_image
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.protocol import model_input, parse_infer_request
from cnnsweep.serving.responses import classify, infer_response, top_k
from cnnsweep.serving.settings import ModelSpec, ServeConfigError, build_settings
from cnnsweep.transforms import Preprocess

CLASSES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An (untrained) RGB 12x12 model exported for real, so the session and metadata are genuine."""
    torch.manual_seed(0)
    pre = Preprocess(source_size=(16, 16), source_channels=3, resize_to=12, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    model = build_model(ModelConfig(num_stages=1, width=4, convs_per_stage=1), len(CLASSES), 3, 12).eval()
    path = export_onnx(model, OnnxModelInfo(CLASSES, pre), tmp_path_factory.mktemp("m") / "tiny.onnx")
    return load_served_model(ModelSpec(path=str(path)), num_threads=1), model


SETTINGS = build_settings({"models": ["unused.onnx"], "max_batch_size": 4, "max_image_pixels": 10_000})


def _request(**inp):
    return json.dumps({"inputs": [{"name": "input", **inp}]}).encode()


def _status(fn, *args) -> int:
    with pytest.raises(HttpError) as err:
        fn(*args)
    assert err.value.message
    return err.value.status


def test_json_depth_guard():
    assert json_depth(b'{"a": [[1, 2], [3]]}') == 3
    assert _status(parse_json, b"[" * 50 + b"]" * 50, 32) == 400
    assert _status(parse_json, b"\xff\xfe", 32) == 400
    assert parse_json(b'{"x": [1]}', 32) == {"x": [1]}


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_image_formats_and_guards():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_png(rgb), 10_000), rgb)
    np.testing.assert_array_equal(decode_image(_png(rgb, "PPM"), 10_000), rgb)
    assert decode_image(_png(rgb, "JPEG"), 10_000).shape == (20, 30, 3)
    assert _status(decode_image, b"GIF89a not allowed", 10_000) == 400
    assert _status(decode_image, _png(rgb)[:60], 10_000) == 400  # truncated
    assert _status(decode_image, _png(np.zeros((200, 200), np.uint8)), 10_000) == 413  # over the pixel limit


def test_fp32_and_uint8_inputs_use_the_training_preprocess(served):
    sm, _ = served
    pixels = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    req, tail = parse_infer_request(_request(shape=[2, 16, 16, 3], datatype="UINT8",
                                             data=pixels.tolist()), None, 32)
    x = model_input(req, tail, sm, SETTINGS)
    expected = sm.info.preprocess(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()).numpy()
    np.testing.assert_array_equal(x, expected)
    req, tail = parse_infer_request(_request(shape=[2, 3, 12, 12], datatype="FP32",
                                             data=expected.reshape(-1).tolist()), None, 32)
    np.testing.assert_array_equal(model_input(req, tail, sm, SETTINGS), expected)


@pytest.mark.parametrize("inp, status", [
    (dict(shape=[1, 3, 12, 12], datatype="FP64", data=[0.0] * 432), 400),
    (dict(shape=[1, 3, 10, 10], datatype="FP32", data=[0.0] * 300), 400),  # wrong H x W
    (dict(shape=[1, 3, 12, 12], datatype="FP32", data=[0.0] * 431), 400),  # length mismatch
    (dict(shape=[5, 3, 12, 12], datatype="FP32", data=[0.0] * 2160), 400),  # batch over 4
    (dict(shape=[1, 3, 12, 12], datatype="FP32", data=[float("nan")] + [0.0] * 431), 400),
    (dict(shape=[1, 3, 12, 12], datatype="FP32", data=["a"] * 432), 400),
    (dict(shape=[2, 2], datatype="FP32", data=[[1.0, 2.0], [3.0]]), 400),  # ragged
    (dict(shape=[1, 4, 4, 3], datatype="UINT8", data=[256] * 48), 400),
    (dict(shape=[1, 4, 4, 2], datatype="UINT8", data=[1] * 32), 400),  # 2 channels
    (dict(shape=[1, 200, 200, 1], datatype="UINT8", data=[0] * 40000), 413),  # pixel limit
    (dict(shape=[1, 3, 12, 12], datatype="FP32"), 400),  # no data
    (dict(shape=[1, -3, 12, 12], datatype="FP32", data=[]), 400),
])
def test_bad_tensors_are_4xx(served, inp, status):
    sm, _ = served
    req, tail = parse_infer_request(_request(**inp), None, 32)
    assert _status(model_input, req, tail, sm, SETTINGS) == status


def _binary_request(x: np.ndarray, output_params: dict) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": output_params}]})
    return head.encode() + x.tobytes(), str(len(head))


@pytest.mark.parametrize("classification", [None, 2])
def test_binary_tensor_extension_round_trips_through_tritonclient(served, classification):
    from tritonclient.http import InferResult

    sm, model = served
    x = np.random.default_rng(2).normal(size=(3, 3, 12, 12)).astype(np.float32)
    params = {"binary_data": True} | ({"classification": classification} if classification else {})
    body, header = _binary_request(x, params)
    req, tail = parse_infer_request(body, header, 32)
    logits = sm.run(model_input(req, tail, sm, SETTINGS))
    out, header_length = infer_response(req, sm, logits)
    got = InferResult.from_response_body(out, header_length=header_length).as_numpy("logits")
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    if classification is None:
        np.testing.assert_allclose(got, ref, atol=1e-4)
    else:
        assert [[int(s.decode().split(":")[1]) for s in row] for row in got] == np.argsort(-ref, 1)[:, :2].tolist()
    bad = body[:-4]
    req, tail = parse_infer_request(bad, header, 32)
    assert _status(model_input, req, tail, sm, SETTINGS) == 400
    assert _status(parse_infer_request, bad, "999999", 32) == 400


def test_classification_and_top_k_format():
    logits = np.array([[0.5, 2.0, -1.0, 1.0]], np.float32)
    assert classify(logits, 2, CLASSES).tolist() == [["2.000000:1:one", "1.000000:3:three"]]
    preds = top_k(logits[0], 3, CLASSES)
    assert [p["label"] for p in preds] == ["one", "three", "zero"]
    assert sum(p["score"] for p in top_k(logits[0], 4, CLASSES)) == pytest.approx(1.0)


def test_settings_errors_are_clear():
    with pytest.raises(ServeConfigError, match="distinct names"):
        build_settings({"models": ["a/m.onnx", "b/m.onnx"]})
    with pytest.raises(ServeConfigError, match="max_ongoing_requests"):
        build_settings({"models": ["m.onnx"], "max_batch_size": 64, "max_ongoing_requests": 8})
    assert build_settings({"models": ["x/best.onnx"]}).models[0].served_name == "best"


def test_shipped_serve_configs_are_valid_settings():
    import yaml

    from cnnsweep.config import load_yaml

    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    local = load_yaml(repo / "serve" / "config.yaml")
    service = yaml.safe_load(next(yaml.safe_load_all((repo / "serve" / "rayservice.yaml").read_text()))["spec"]["serveConfigV2"])
    for config in (local, service):
        [application] = config["applications"]
        assert build_settings(application["args"]).models[0].served_name == "model"
    assert local["http_options"]["host"] == "127.0.0.1"
