"""The real server on loopback over real HTTP (requests + tritonclient): routes, bad input, overload,
and served predictions equal to the PyTorch checkpoint's on real GTSRB validation images."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.export import OnnxRunner, export_checkpoint

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TINY_CNN = {"num_stages": 2, "width": 8, "convs_per_stage": 1}
LIMITS = {"max_batch_size": 8, "max_ongoing_requests": 32, "max_body_bytes": 256 * 1024,
          "max_image_pixels": 100_000, "num_cpus": 0.5, "read_timeout_s": 2.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_and_export(cfg: dict, folder, name: str):
    cfg = validate_config(cfg)
    hooks = LocalHooks(output=folder / "run")
    fit(cfg, load_dataset(cfg.data), hooks)
    export_checkpoint(hooks.last_checkpoint, folder / f"{name}.onnx")
    return folder / f"{name}.onnx", hooks.last_checkpoint


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cfg = {"data": {"name": "digits"}, "model": TINY_CNN, "train": {"epochs": 1, "batch_size": 64, "amp": "off"}}
    return _train_and_export(cfg, tmp_path_factory.mktemp("digits"), "digits")


@pytest.fixture(scope="module")
def server(ray_session, digits):
    """The `cnnsweep serve` code path, bound to 127.0.0.1 on a free port; torn down after the module."""
    from ray import serve

    from cnnsweep.serving import build_settings
    from cnnsweep.distributed.serve import start_server

    url = start_server(build_settings({"models": [str(digits[0])], **LIMITS}), port=_free_port())
    yield url
    serve.shutdown()


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels in a few bytes: a decompression bomb as far as the header goes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _infer_body(shape, datatype="UINT8", data=None, name="image", **extra) -> str:
    n = int(np.prod(shape))
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                   "data": [0] * n if data is None else data}], **extra})


class Chunks:
    """A body sent chunked (no length known up server), the same on every use."""

    def __init__(self, chunk: bytes, n: int):
        self.chunk, self.n = chunk, n

    def __iter__(self):
        return (self.chunk for _ in range(self.n))


DIGIT = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
GOOD_PNG = _png(DIGIT)
J = {"Content-Type": "application/json"}
PNG = {"Content-Type": "image/png"}
INFER, PREDICT = "/v2/models/digits/infer", "/v2/models/digits/predict"

BAD_REQUESTS = [  # (id, method, path, requests kwargs, expected status)
    ("infer-empty", "post", INFER, dict(data=b"", headers=J), 400),
    ("infer-not-json", "post", INFER, dict(data=b"\x00\xffnot json", headers=J), 400),
    ("infer-json-array", "post", INFER, dict(data=b"[1, 2]", headers=J), 400),
    ("infer-nested-100k", "post", INFER, dict(data=b"[" * 100_000 + b"]" * 100_000, headers=J), 400),
    ("infer-nested-40", "post", INFER, dict(data=(b'{"inputs":' + b"[" * 40 + b"]" * 40 + b"}"), headers=J), 400),
    ("infer-nested-901-behind-strings", "post", INFER, dict(data=('["]",' * 901 + "0" + "]" * 901).encode(),
                                                            headers=J), 400),
    ("infer-65-dims", "post", INFER, dict(data=json.dumps({"inputs": [{"name": "image", "shape": [1] * 65,
                                                                        "datatype": "UINT8", "data": [0]}]}),
                                          headers=J), 400),
    ("infer-no-inputs", "post", INFER, dict(data=b'{"outputs": []}', headers=J), 400),
    ("infer-two-inputs", "post", INFER, dict(data=json.dumps({"inputs": [json.loads(_infer_body([1, 8, 8, 1]))[
        "inputs"][0]] * 2}), headers=J), 400),
    ("infer-wrong-shape", "post", INFER, dict(data=_infer_body([1, 8, 8, 2]), headers=J), 400),
    ("infer-channels-first", "post", INFER, dict(data=_infer_body([1, 1, 8, 8]), headers=J), 400),
    ("infer-wrong-dtype", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], "INT64"), headers=J), 400),
    # the old normalized FP32 model input: a clear 400 under its old name and the new one
    ("infer-fp32", "post", INFER, dict(data=_infer_body([1, 1, 8, 8], "FP32", [0.5] * 64), headers=J), 400),
    ("infer-fp32-old-input-name", "post", INFER, dict(data=_infer_body([1, 1, 8, 8], "FP32", [0.5] * 64,
                                                                       name="input"), headers=J), 400),
    ("infer-nan", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], data=[0] * 63 + [float("nan")]),
                                       headers=J), 400),
    ("infer-inf", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], data=[float("inf")] * 64), headers=J), 400),
    ("infer-batch-over-limit", "post", INFER, dict(data=_infer_body([9, 8, 8, 1]), headers=J), 400),
    ("infer-length-mismatch", "post", INFER, dict(data=_infer_body([2, 8, 8, 1], data=[0] * 100), headers=J), 400),
    ("infer-strings", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], data=["x"] * 64), headers=J), 400),
    ("infer-uint8-range", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], "UINT8", [300] * 64), headers=J), 400),
    ("infer-uint8-fraction", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], "UINT8", [0.5] * 64), headers=J), 400),
    ("infer-unknown-output", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], outputs=[{"name": "probs"}]),
                                                 headers=J), 400),
    ("infer-bad-classification", "post", INFER, dict(data=_infer_body([1, 8, 8, 1], outputs=[
        {"name": "logits", "parameters": {"classification": "three"}}]), headers=J), 400),
    ("infer-text-plain", "post", INFER, dict(data=_infer_body([1, 8, 8, 1]), headers={"Content-Type": "text/plain"}),
     415),
    ("infer-gzip", "post", INFER, dict(data=zlib.compress(b"{}"), headers={**J, "Content-Encoding": "gzip"}), 415),
    ("infer-bad-header-length", "post", INFER, dict(data=_infer_body([1, 8, 8, 1]), headers={
        **J, "Inference-Header-Content-Length": "10000000"}), 400),
    ("infer-unknown-model", "post", "/v2/models/nope/infer", dict(data=_infer_body([1, 8, 8, 1]), headers=J), 404),
    ("infer-unknown-version", "post", "/v2/models/digits/versions/7/infer", dict(data=_infer_body([1, 8, 8, 1]),
                                                                                headers=J), 404),
    ("infer-too-large", "post", INFER, dict(data=b" " * (300 * 1024), headers=J), 413),
    ("infer-too-large-chunked", "post", INFER, dict(data=Chunks(b" " * 65536, 6), headers=J), 413),
    ("infer-get", "get", INFER, {}, 405),
    ("metadata-unknown-model", "get", "/v2/models/nope", {}, 404),
    ("unknown-route", "get", "/v3/anything", {}, 404),
    ("predict-empty", "post", PREDICT, dict(data=b"", headers=PNG), 400),
    ("predict-not-an-image", "post", PREDICT, dict(data=b"hello, world", headers=PNG), 400),
    ("predict-gif", "post", PREDICT, dict(data=_png(DIGIT, "GIF"), headers={"Content-Type": "image/gif"}), 415),
    ("predict-gif-as-png", "post", PREDICT, dict(data=_png(DIGIT, "GIF"), headers=PNG), 400),
    ("predict-truncated", "post", PREDICT, dict(data=_png(np.random.default_rng(0).integers(
        0, 256, (64, 64, 3), dtype=np.uint8))[:2000], headers=PNG), 400),
    ("predict-bomb-30000px", "post", PREDICT, dict(data=_png_header_only(30000, 30000), headers=PNG), 413),
    ("predict-bomb-1000px", "post", PREDICT, dict(data=_png_header_only(1000, 1000), headers=PNG), 413),
    ("predict-json-type", "post", PREDICT, dict(data=GOOD_PNG, headers=J), 415),
    ("predict-form-urlencoded", "post", PREDICT, dict(data=GOOD_PNG, headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415),
    ("predict-multipart-no-file", "post", PREDICT, dict(files={"other": ("a.png", GOOD_PNG, "image/png")}), 400),
    ("predict-multipart-text-field", "post", PREDICT, dict(data={"file": "not a file"}, files={
        "x": ("x", b"1")}), 400),
    ("predict-top-k-zero", "post", PREDICT + "?top_k=0", dict(data=GOOD_PNG, headers=PNG), 400),
    ("predict-top-k-text", "post", PREDICT + "?top_k=many", dict(data=GOOD_PNG, headers=PNG), 400),
    ("predict-unknown-model", "post", "/v2/models/nope/predict", dict(data=GOOD_PNG, headers=PNG), 404),
    ("predict-too-large", "post", PREDICT, dict(data=b"\x89PNG" + b"\0" * (300 * 1024), headers=PNG), 413),
]


def test_health_and_metadata_routes(server):
    assert requests.get(f"{server}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{server}/v2/health/ready").json() == {"ready": True}
    assert requests.get(f"{server}/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
    assert requests.get(f"{server}/v2/models/digits/versions/1/ready").status_code == 200
    meta = requests.get(f"{server}/v2/models/digits").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 1]}]
    assert meta["parameters"]["temperature"] > 0  # fitted at export: probabilities are softmax(logits / T)
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["parameters"]["class_names"][3] == "3"
    assert requests.get(f"{server}/v2").json()["extensions"] == ["classification", "binary_tensor_data"]
    assert [m["name"] for m in requests.get(f"{server}/v2/models").json()["models"]] == ["digits"]
    assert "/v2/models/{name}/infer" in requests.get(f"{server}/openapi.json").json()["paths"]
    assert requests.get(f"{server}/docs").status_code == 200


def test_predict_upload_multipart_and_raw_match_in_process_onnx(server, digits):
    runner = OnnxRunner.load(digits[0])
    lm = load_model_from_checkpoint(digits[1])
    expected = runner.logits(DIGIT[None, :, :, None])[0]
    with torch.inference_mode():  # the model file reproduces the training path on the same pixels
        np.testing.assert_allclose(expected, lm.model(lm.preprocess(torch.from_numpy(DIGIT)[None, None]))[0],
                                   atol=1e-4)
    z = expected / runner.info.temperature
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # calibrated: softmax(logits / temperature)
    multipart = requests.post(f"{server}{PREDICT}?top_k=3", files={"file": ("d.png", GOOD_PNG, "image/png")})
    raw = requests.post(f"{server}{PREDICT}?top_k=3", data=_png(DIGIT, "PPM"),
                        headers={"Content-Type": "image/x-portable-pixmap"})
    for r in (multipart, raw):
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["index"] for p in preds] == np.argsort(-expected)[:3].tolist()
        assert preds[0]["label"] == str(preds[0]["index"])
        assert preds[0]["score"] == pytest.approx(p[preds[0]["index"]], abs=1e-5)


def test_tritonclient_uint8_binary_json_and_classification(server, digits):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["platform"] == "onnxruntime_onnx"
    lm = load_model_from_checkpoint(digits[1])
    images = load_dataset(lm.config.data).valid.images[:7]  # uint8 N x 1 x 8 x 8
    x = images.permute(0, 2, 3, 1).contiguous().numpy()  # what clients send: N x H x W x C raw pixels
    with torch.inference_mode():
        ref = lm.model(lm.preprocess(images)).numpy()
    for binary in (True, False):
        inp = httpclient.InferInput("image", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = client.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)])
        np.testing.assert_allclose(out.as_numpy("logits"), ref, atol=1e-4)
        top = client.infer("digits", [inp], outputs=[
            httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=3)]).as_numpy("logits")
        assert top.shape == (7, 3)
        labels = [[(s.decode() if isinstance(s, bytes) else s).split(":") for s in row] for row in top]
        assert [[int(i) for _, i, _ in row] for row in labels] == np.argsort(-ref, 1)[:, :3].tolist()
        assert labels[0][0][2] == lm.class_names[int(labels[0][0][1])]


def test_tritonclient_fp32_input_is_refused_with_a_clear_message(server, digits):
    """The old contract (normalized FP32 "input") is a 400 naming what to send, not a 500."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=server.removeprefix("http://"))
    x = np.zeros((1, 1, 8, 8), np.float32)
    for name, word in (("input", "unknown input 'input'"), ("image", "datatype 'FP32' is not supported")):
        inp = httpclient.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as err:
            client.infer("digits", [inp])
        assert word in err.value.message() and "UINT8" in err.value.message(), err.value.message()
        assert err.value.status() == "400", err.value.status()


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_is_a_clear_4xx(server, case):
    _, method, path, kwargs, status = case
    r = getattr(requests, method)(f"{server}{path}", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_replica_still_answers_after_the_bad_input_corpus(server, digits):
    for _, method, path, kwargs, _ in BAD_REQUESTS:
        assert getattr(requests, method)(f"{server}{path}", timeout=60, **kwargs).status_code < 500
    assert requests.get(f"{server}/v2/health/ready").status_code == 200
    r = requests.post(f"{server}{INFER}", data=_infer_body([1, 8, 8, 1], "UINT8", DIGIT.reshape(-1).tolist()),
                      headers=J)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]


def test_overload_sheds_with_503_instead_of_hanging(server, digits):
    from ray import serve

    from cnnsweep.distributed.serve import build_app

    # A tight second app: 2 in flight (each waiting 0.5 s for a batch to fill) + 2 queued, the rest shed.
    tight = {"models": [str(digits[0])], "max_batch_size": 2, "max_ongoing_requests": 2, "max_queued_requests": 2,
             "batch_wait_timeout_s": 0.5, "num_cpus": 0.5}
    serve.run(build_app(tight), name="overload", route_prefix="/overload")
    url = f"{server}/overload{INFER}"
    body = _infer_body([1, 8, 8, 1])
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda _: requests.post(url, data=body, headers=J, timeout=30), range(32)))
    assert time.perf_counter() - start < 20
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) >= 16 and codes.count(200) >= 2, codes
    assert all(r.headers.get("Retry-After") == "1" for r in responses if r.status_code == 503)
    assert all(r.json()["error"] for r in responses if r.status_code == 503)  # the proxy's text, as JSON
    assert requests.post(url, data=body, headers=J, timeout=30).status_code == 200  # recovers
    serve.delete("overload")


def test_an_autoscaled_app_answers(server, digits):
    """num_replicas auto + autoscaling_config: Serve starts min_replicas and routes to them."""
    from ray import serve

    from cnnsweep.distributed.serve import build_app

    serve.run(build_app({"models": [str(digits[0])], "num_replicas": "auto", "num_cpus": 0.5,
                         "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8}}),
              name="autoscaled", route_prefix="/autoscaled")
    try:
        r = requests.post(f"{server}/autoscaled{PREDICT}", data=GOOD_PNG, headers=PNG, timeout=60)
        assert r.status_code == 200 and r.json()["predictions"], r.text
        [deployment] = serve.status().applications["autoscaled"].deployments.values()
        assert deployment.status == "HEALTHY"
    finally:
        serve.delete("autoscaled")


def test_a_client_that_stalls_mid_body_gets_408_and_frees_its_slot(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 1000\r\n\r\n{{\"inputs\": ".encode())
        start = time.perf_counter()
        answer = b""
        while b'"}' not in answer and (chunk := conn.recv(65536)):  # headers and body may come apart
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert '"error"' in answer and time.perf_counter() - start < 20
    assert requests.get(f"{server}/v2/health/ready", timeout=10).status_code == 200


# ---------------------------------------------------------------------------- real GTSRB


@pytest.fixture(scope="module")
def gtsrb(server, gtsrb_root, tmp_path_factory):
    """A tiny CNN trained on a GTSRB subset, exported, and served as a second application."""
    from ray import serve

    from cnnsweep.distributed.serve import build_app

    cfg = {"data": {"name": "gtsrb_pickle", "root": str(gtsrb_root), "max_train_samples": 3000,
                    "max_val_samples": 430},
           "model": TINY_CNN, "train": {"epochs": 2, "batch_size": 128, "lr": 3e-3, "amp": "off"}}
    path, ckpt = _train_and_export(cfg, tmp_path_factory.mktemp("gtsrb"), "gtsrb")
    serve.run(build_app({"models": [str(path)], "max_batch_size": 64, "num_cpus": 0.5}), name="gtsrb",
              route_prefix="/gtsrb")
    yield f"{server}/gtsrb", path, ckpt
    serve.delete("gtsrb")


@pytest.mark.data
def test_served_gtsrb_predictions_equal_pytorch_and_in_process_onnx(gtsrb):
    url, path, ckpt = gtsrb
    lm = load_model_from_checkpoint(ckpt)
    valid = load_dataset(lm.config.data).valid.images[:96]  # real validation images, uint8 N x 3 x 32 x 32
    with torch.inference_mode():
        torch_top1 = lm.model(lm.preprocess(valid)).argmax(1).numpy()
    runner = OnnxRunner.load(path)
    ort_logits = runner.split_logits(valid)  # the model file on the same raw pixels
    pngs = [_png(img.permute(1, 2, 0).numpy()) for img in valid]

    def predict(png: bytes) -> dict:  # concurrent uploads: they share server-side batches
        r = requests.post(f"{url}/v2/models/gtsrb/predict?top_k=1", files={"file": ("s.png", png, "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    with ThreadPoolExecutor(16) as pool:
        served = list(pool.map(predict, pngs))
    served_top1 = np.array([p["index"] for p in served])
    assert (served_top1 == torch_top1).all() and (served_top1 == ort_logits.argmax(1)).all()
    z = ort_logits / runner.info.temperature  # served scores are calibrated: softmax(logits / temperature)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose([p["score"] for p in served], probs[np.arange(96), served_top1], atol=1e-5)
    assert served[0]["label"] == lm.class_names[served_top1[0]]


@pytest.mark.data
def test_tritonclient_uint8_raw_pixels_on_gtsrb(gtsrb):
    import tritonclient.http as httpclient

    url, path, ckpt = gtsrb
    lm = load_model_from_checkpoint(ckpt)
    valid = load_dataset(lm.config.data).valid.images[100:164]
    hwc = valid.permute(0, 2, 3, 1).contiguous().numpy()
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    inp = httpclient.InferInput("image", list(hwc.shape), "UINT8")
    inp.set_data_from_numpy(hwc)
    got = client.infer("gtsrb", [inp]).as_numpy("logits")
    with torch.inference_mode():
        np.testing.assert_allclose(got, lm.model(lm.preprocess(valid)).numpy(), atol=1e-4)
