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
from cnnsweep.serving.http_error import HttpError
from cnnsweep.serving.images import decode_image
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.protocol import model_input, parse_infer_request
from cnnsweep.serving.responses import classify, infer_response, top_k
from cnnsweep.serving.settings import ModelSpec, ServeConfigError, build_settings
from cnnsweep.transforms import Preprocess

CLASSES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An (untrained) RGB 12x12 model exported for real, so the session and metadata are genuine (with a
    calibration temperature, as `cnnsweep export` fits one)."""
    torch.manual_seed(0)
    pre = Preprocess(source_size=(16, 16), source_channels=3, resize_to=12, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    model = build_model(ModelConfig(num_stages=1, width=4, convs_per_stage=1), len(CLASSES), 3, 12).eval()
    path = export_onnx(model, OnnxModelInfo(CLASSES, pre, temperature=2.5), tmp_path_factory.mktemp("m") / "tiny.onnx")
    return load_served_model(ModelSpec(path=str(path)), num_threads=1), model


SETTINGS = build_settings({"models": ["unused.onnx"], "max_batch_size": 4, "max_image_pixels": 10_000})


def _request(name="image", **inp):
    return json.dumps({"inputs": [{"name": name, **inp}]}).encode()


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


def _torch_logits(model, pre, pixels: np.ndarray) -> np.ndarray:
    """The PyTorch training path on uint8 N x H x W x C pixels: the checkpoint's Preprocess, its network."""
    with torch.inference_mode():
        return model(pre(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())).numpy()


def test_uint8_pixels_are_the_model_input_and_run_like_training(served):
    sm, model = served
    pixels = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    req, tail = parse_infer_request(_request(shape=[2, 16, 16, 3], datatype="UINT8",
                                             data=pixels.tolist()), None, 32)
    x = model_input(req, tail, sm, SETTINGS)
    assert x.dtype == np.uint8 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, pixels)  # no preprocessing outside the model file
    np.testing.assert_allclose(sm.run(x), _torch_logits(model, sm.info.preprocess, pixels), atol=1e-4)


def test_gray_any_size_and_alpha_pixels_reach_the_model_file(served):
    sm, model = served
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (2, 20, 30), dtype=np.uint8)  # N x H x W: gray, not the training size
    req, tail = parse_infer_request(_request(shape=[2, 20, 30], datatype="UINT8", data=gray.tolist()), None, 32)
    x = model_input(req, tail, sm, SETTINGS)
    np.testing.assert_array_equal(x, gray[..., None])
    rgb = np.repeat(gray[..., None], 3, axis=-1)  # the same gray image as RGB: the training code's conversion
    np.testing.assert_allclose(sm.run(x), _torch_logits(model, sm.info.preprocess, rgb), atol=1e-4)
    rgba = np.concatenate([rgb, np.full((2, 20, 30, 1), 7, np.uint8)], axis=-1)  # alpha is dropped
    np.testing.assert_allclose(sm.run(rgba), sm.run(rgb), atol=1e-6)


@pytest.mark.parametrize("name, word", [("input", "unknown input 'input'"), ("image", "datatype 'FP32' is not supported")])
def test_fp32_tensors_are_refused_clearly(served, name, word):
    """The model file takes raw pixels only: the old normalized FP32 input is a clear 400, not a 500."""
    sm, _ = served
    req, tail = parse_infer_request(_request(name=name, shape=[1, 3, 12, 12], datatype="FP32",
                                             data=[0.0] * 432), None, 32)
    with pytest.raises(HttpError) as err:
        model_input(req, tail, sm, SETTINGS)
    assert err.value.status == 400 and word in err.value.message and "UINT8" in err.value.message


@pytest.mark.parametrize("inp, status", [
    (dict(shape=[1, 12, 12, 3], datatype="FP64", data=[0.0] * 432), 400),
    (dict(shape=[1, 12, 12, 3], datatype="FP32", data=[0.0] * 432), 400),  # the old normalized input
    (dict(name="input", shape=[1, 12, 12, 3], datatype="UINT8", data=[0] * 432), 400),  # the old input name
    (dict(shape=[1, 12, 12, 3], datatype="UINT8", data=[0] * 431), 400),  # length mismatch
    (dict(shape=[5, 12, 12, 3], datatype="UINT8", data=[0] * 2160), 400),  # batch over 4
    (dict(shape=[1, 12, 12, 3], datatype="UINT8", data=[float("nan")] + [0] * 431), 400),
    (dict(shape=[1, 12, 12, 3], datatype="UINT8", data=[0.5] * 432), 400),  # not whole numbers
    (dict(shape=[1, 12, 12, 3], datatype="UINT8", data=[-1] * 432), 400),
    (dict(shape=[1, 12, 12, 3], datatype="UINT8", data=["a"] * 432), 400),
    (dict(shape=[2, 2], datatype="UINT8", data=[[1, 2], [3]]), 400),  # ragged
    (dict(shape=[2, 2], datatype="UINT8", data=[1, 2, 3, 4]), 400),  # 2 dimensions: not images
    (dict(shape=[1, 4, 4, 3], datatype="UINT8", data=[256] * 48), 400),
    (dict(shape=[1, 4, 4, 2], datatype="UINT8", data=[1] * 32), 400),  # 2 channels
    (dict(shape=[1, 3, 12, 12], datatype="UINT8", data=[1] * 432), 400),  # N x C x H x W: 12 channels
    (dict(shape=[1, 200, 200, 1], datatype="UINT8", data=[0] * 40000), 413),  # pixel limit
    (dict(shape=[1, 12, 12, 3], datatype="UINT8"), 400),  # no data
    (dict(shape=[1, -3, 12, 12], datatype="UINT8", data=[]), 400),
])
def test_bad_tensors_are_4xx(served, inp, status):
    sm, _ = served
    req, tail = parse_infer_request(_request(**inp), None, 32)
    assert _status(model_input, req, tail, sm, SETTINGS) == status


def _binary_request(x: np.ndarray, output_params: dict) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "UINT8",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": output_params}]})
    return head.encode() + x.tobytes(), str(len(head))


@pytest.mark.parametrize("classification", [None, 2])
def test_binary_tensor_extension_round_trips_through_tritonclient(served, classification):
    from tritonclient.http import InferResult

    sm, model = served
    x = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    params = {"binary_data": True} | ({"classification": classification} if classification else {})
    body, header = _binary_request(x, params)
    req, tail = parse_infer_request(body, header, 32)
    logits = sm.run(model_input(req, tail, sm, SETTINGS))
    out, header_length = infer_response(req, sm, logits)
    got = InferResult.from_response_body(out, header_length=header_length).as_numpy("logits")
    ref = _torch_logits(model, sm.info.preprocess, x)
    if classification is None:
        np.testing.assert_allclose(got, ref, atol=1e-4)
    else:
        assert [[int(s.decode().split(":")[1]) for s in row] for row in got] == np.argsort(-ref, 1)[:, :2].tolist()
    bad = body[:-4]
    req, tail = parse_infer_request(bad, header, 32)
    assert _status(model_input, req, tail, sm, SETTINGS) == 400
    assert _status(parse_infer_request, bad, "999999", 32) == 400


def test_probabilities_are_softmax_of_logits_over_the_files_temperature(served):
    sm, _ = served
    assert sm.info.temperature == 2.5 and sm.metadata()["parameters"]["temperature"] == 2.5
    assert sm.metadata()["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    pixels = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    body = json.dumps({"inputs": [{"name": "image", "shape": [2, 16, 16, 3], "datatype": "UINT8",
                                   "data": pixels.reshape(-1).tolist()}],
                       "outputs": [{"name": "logits"}, {"name": "probabilities"}]}).encode()
    req, tail = parse_infer_request(body, None, 32)
    out, header_length = infer_response(req, sm, sm.run(model_input(req, tail, sm, SETTINGS)))
    assert header_length is None
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in json.loads(out)["outputs"]}
    z = np.exp(outputs["logits"] / 2.5 - (outputs["logits"] / 2.5).max(1, keepdims=True))
    np.testing.assert_allclose(outputs["probabilities"], z / z.sum(1, keepdims=True), atol=1e-6)
    preds = top_k(outputs["logits"][0], 4, CLASSES, sm.info.temperature)
    assert [p["score"] for p in preds] == pytest.approx(sorted(z[0] / z[0].sum(), reverse=True), abs=1e-6)


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
