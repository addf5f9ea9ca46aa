"""Crafted malformed requests (headers, multipart, shapes, datatypes, tensor payloads) against the HTTP
app and the gRPC service in process: each one is a 4xx `{"error": ...}` (gRPC: INVALID_ARGUMENT /
NOT_FOUND with details), never a 5xx or an exception. Requests the HTTP parser itself refuses never
reach the app: Ray's uvicorn answers them with a plain-text 400 (serve/README.md)."""

from __future__ import annotations

import asyncio
import io
import json
import time
import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnsweep.serving.http_app import build_http_app

INFER = "/v2/models/tiny/infer"
PREDICT = "/v2/models/tiny/predict"
I64 = 2 ** 63


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def _tensor(shape, data=None, datatype="UINT8", name="image", **extra) -> bytes:
    inp = {"name": name, "shape": shape, "datatype": datatype, "data": [128] * 64 if data is None else data, **extra}
    return json.dumps({"inputs": [inp]}).encode()


def _infer(body: bytes, headers=None) -> dict:
    return dict(path=INFER, content=body, headers={"Content-Type": "application/json", **(headers or {})})


def _multipart(boundary_param: bytes, body: bytes) -> dict:
    return dict(path=PREDICT, content=body, headers={"Content-Type": b"multipart/form-data" + boundary_param})


def _part(name: bytes = b'name="file"; filename="a.png"', payload: bytes = PNG, boundary: bytes = b"abc") -> bytes:
    return (b"--" + boundary + b"\r\nContent-Disposition: form-data; " + name + b"\r\nContent-Type: image/png\r\n\r\n"
            + payload + b"\r\n")


GOOD_BODY = _tensor([1, 8, 8, 1])  # what the model takes: "image", UINT8 [N, H, W, C] raw pixels
BINARY_HEAD = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "UINT8",
                                      "parameters": {"binary_data_size": 64}}]}).encode()
HTTP_CASES = {  # id -> (TestClient.post kwargs, expected status)
    # shapes
    "shape-negative": (_infer(_tensor([-1, 8, 8, 1])), 400),
    "shape-zero-batch": (_infer(_tensor([0, 8, 8, 1], data=[])), 400),
    "shape-zero-height": (_infer(_tensor([1, 0, 8, 1], data=[])), 400),
    "shape-zero-width": (_infer(_tensor([1, 8, 0, 1], data=[])), 400),
    "shape-two-channels": (_infer(_tensor([1, 8, 4, 2])), 400),
    "shape-channels-first": (_infer(_tensor([1, 1, 8, 8])), 400),  # N x C x H x W: 8 channels
    "shape-bool-dim": (_infer(_tensor([True, 8, 8, 1])), 400),
    "shape-float-dim": (_infer(_tensor([1.0, 8, 8, 1])), 400),
    "shape-fractional-dim": (_infer(_tensor([1.5, 8, 8, 1])), 400),
    "shape-string-dim": (_infer(_tensor(["1", 8, 8, 1])), 400),
    "shape-nested-dim": (_infer(_tensor([[1], 8, 8, 1])), 400),
    "shape-null": (_infer(_tensor(None)), 400),
    "shape-dict": (_infer(_tensor({"n": 1})), 400),
    "shape-dim-over-int64": (_infer(_tensor([I64, 1, 1, 1])), 400),
    "shape-product-over-int64": (_infer(_tensor([2 ** 32, 2 ** 32, 1, 1])), 400),
    "shape-huge-in-int64": (_infer(_tensor([2 ** 20, 2 ** 20, 1, 1])), 413),
    "shape-1e308": (_infer(GOOD_BODY.replace(b"[1, 8, 8, 1]", b"[1e308, 8, 8, 1]")), 400),
    "shape-five-dims": (_infer(_tensor([1, 1, 8, 8, 1])), 400),
    # data and datatypes
    "data-dict": (_infer(_tensor([1, 8, 8, 1], data={"a": 1})), 400),
    "data-string": (_infer(_tensor([1, 8, 8, 1], data="abc")), 400),
    "data-nulls": (_infer(_tensor([1, 8, 8, 1], data=[None] * 64)), 400),
    "data-ragged": (_infer(_tensor([1, 8, 8, 1], data=[[1], [1, 2]])), 400),
    "data-huge-ints": (_infer(_tensor([1, 8, 8, 1], data=[10 ** 30] * 64)), 400),
    "data-over-255": (_infer(_tensor([1, 8, 8, 1], data=[256] * 64)), 400),
    "data-negative": (_infer(_tensor([1, 8, 8, 1], data=[-1] * 64)), 400),
    "data-fractional": (_infer(_tensor([1, 8, 8, 1], data=[0.5] * 64)), 400),
    "data-nan": (_infer(GOOD_BODY.replace(b"128", b"NaN")), 400),
    "data-infinity": (_infer(GOOD_BODY.replace(b"128", b"Infinity")), 400),
    "datatype-unknown": (_infer(_tensor([1, 8, 8, 1], datatype="FP64")), 400),
    "datatype-not-a-string": (_infer(_tensor([1, 8, 8, 1], datatype=5)), 400),
    # the old normalized FP32 model input: refused clearly, under its old name or the new one
    "datatype-fp32": (_infer(_tensor([1, 1, 8, 8], data=[0.5] * 64, datatype="FP32")), 400),
    "input-fp32-old-name": (_infer(_tensor([1, 1, 8, 8], data=[0.5] * 64, datatype="FP32", name="input")), 400),
    "input-name-unknown": (_infer(_tensor([1, 8, 8, 1], name="pixels")), 400),
    "inputs-dict": (_infer(b'{"inputs": {"a": 1}}'), 400),
    "body-a-list": (_infer(b"[1, 2]"), 400),
    "binary-data-output-string": (_infer(GOOD_BODY[:-1] + b', "parameters": {"binary_data_output": "no"}}'), 400),
    "binary-data-size-string": (_infer(_tensor([1, 8, 8, 1], parameters={"binary_data_size": "64"})), 400),
    # the binary tensor extension's header
    "ihcl-superscript-digit": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": b"\xb2"}), 400),
    "ihcl-not-a-number": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": "x"}), 400),
    "ihcl-negative": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": "-1"}), 400),
    "ihcl-zero": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": "0"}), 400),
    "ihcl-over-the-body": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": str(len(GOOD_BODY) + 1)}), 400),
    "ihcl-huge": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": "9" * 40}), 400),
    "ihcl-splits-the-json": (_infer(GOOD_BODY, {"Inference-Header-Content-Length": "10"}), 400),
    "binary-size-over-the-tail": (_infer(BINARY_HEAD + b"\0" * 63,
                                         {"Inference-Header-Content-Length": str(len(BINARY_HEAD))}), 400),
    # headers
    "content-type-bad-params": (_infer(GOOD_BODY, {"Content-Type": "application/json; ;;=;charset"}), 200),
    "content-type-non-ascii": (_infer(GOOD_BODY, {"Content-Type": b"application/json\xff"}), 415),
    "content-encoding-non-ascii": (_infer(GOOD_BODY, {"Content-Encoding": b"\xff"}), 415),
    # multipart uploads
    "multipart-no-boundary": (_multipart(b"", _part() + b"--abc--\r\n"), 400),
    "multipart-boundary-without-value": (_multipart(b"; boundary", _part() + b"--abc--\r\n"), 400),
    "multipart-empty-params": (_multipart(b";;;", _part() + b"--abc--\r\n"), 400),
    "multipart-wrong-boundary": (_multipart(b"; boundary=xyz", _part() + b"--abc--\r\n"), 400),
    "multipart-boundary-over-256": (_multipart(b"; boundary=" + b"a" * 300, _part(boundary=b"a" * 300)), 400),
    "multipart-garbage": (_multipart(b"; boundary=abc", b"garbage"), 400),
    "multipart-part-without-name": (_multipart(b"; boundary=abc", _part(name=b"") + b"--abc--\r\n"), 400),
    "multipart-two-files": (_multipart(b"; boundary=abc", _part() + _part() + b"--abc--\r\n"), 400),
    "multipart-too-many-fields": (_multipart(b"; boundary=abc", b"".join(
        _part(name=b'name="f%d"' % i, payload=b"x") for i in range(20)) + b"--abc--\r\n"), 400),
    "multipart-text-field": (_multipart(b"; boundary=abc", _part(name=b'name="file"', payload=b"x") + b"--abc--\r\n"),
                             400),
}


@pytest.fixture(scope="module")
def client(local_hub):
    with TestClient(build_http_app(local_hub), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_malformed_http_requests_are_4xx_json_on_the_fastapi_app(client, case):
    kwargs, status = HTTP_CASES[case]
    r = client.post(kwargs["path"], content=kwargs["content"], headers=kwargs["headers"])
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert status == 200 or r.json()["error"]


# ---------------------------------------------------------------------------- gRPC

pytest.importorskip("tritonclient.grpc")
from cnnsweep.serving.grpc_messages import pb  # noqa: E402
from cnnsweep.serving.grpc_service import GrpcService  # noqa: E402


class Context:
    code = details = None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def _grpc_request(shape=(1, 8, 8, 1), datatype="UINT8", name="image", raw=(bytes(64),),
                  outputs=(), model="tiny", version="") -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, model_version=version)
    req.inputs.add(name=name, datatype=datatype, shape=list(shape))
    req.raw_input_contents.extend(raw)
    for out_name, params in outputs:
        out = req.outputs.add(name=out_name)
        for key, value in params.items():
            setattr(out.parameters[key], {bool: "bool_param", int: "int64_param", str: "string_param",
                                          float: "double_param"}[type(value)], value)
    return req


def _without_inputs() -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="tiny")


def _two_inputs() -> pb.ModelInferRequest:
    req = _grpc_request()
    req.inputs.add(name="image", datatype="UINT8", shape=[1, 8, 8, 1])
    return req


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
GRPC_CASES = {
    "shape-negative": (_grpc_request(shape=(-1, 8, 8, 1)), INVALID),
    "shape-zero-batch": (_grpc_request(shape=(0, 8, 8, 1), raw=(b"",)), INVALID),
    "shape-zero-height": (_grpc_request(shape=(1, 0, 8, 1), raw=(b"",)), INVALID),
    "shape-two-channels": (_grpc_request(shape=(1, 8, 4, 2)), INVALID),
    "shape-channels-first": (_grpc_request(shape=(1, 1, 8, 8)), INVALID),
    "shape-huge": (_grpc_request(shape=(2 ** 40, 2 ** 20, 1, 1)), INVALID),
    "shape-product-over-int64": (_grpc_request(shape=(2 ** 62, 2 ** 62, 4, 4)), INVALID),
    "shape-int64-min": (_grpc_request(shape=(-2 ** 63, 8, 8, 1)), INVALID),
    "shape-no-dims": (_grpc_request(shape=()), INVALID),
    "shape-five-dims": (_grpc_request(shape=(1, 1, 8, 8, 1)), INVALID),
    "datatype-empty": (_grpc_request(datatype=""), INVALID),
    "datatype-lowercase": (_grpc_request(datatype="uint8"), INVALID),
    "datatype-bytes": (_grpc_request(datatype="BYTES"), INVALID),
    "datatype-fp64": (_grpc_request(datatype="FP64"), INVALID),
    # the old normalized FP32 model input: refused clearly, under its old name or the new one
    "datatype-fp32": (_grpc_request(shape=(1, 1, 8, 8), datatype="FP32", raw=(np.zeros(64, "<f4").tobytes(),)),
                      INVALID),
    "input-fp32-old-name": (_grpc_request(shape=(1, 1, 8, 8), datatype="FP32", name="input",
                                          raw=(np.zeros(64, "<f4").tobytes(),)), INVALID),
    "fp32-nan": (_grpc_request(shape=(1, 1, 8, 8), datatype="FP32", raw=(np.full(64, np.nan, "<f4").tobytes(),)),
                 INVALID),
    "raw-too-short": (_grpc_request(raw=(b"\0" * 63,)), INVALID),
    "raw-too-long": (_grpc_request(raw=(b"\0" * 65,)), INVALID),
    "raw-empty": (_grpc_request(raw=(b"",)), INVALID),
    "raw-two-entries": (_grpc_request(raw=(b"\0" * 64, b"\0" * 64)), INVALID),
    "no-values": (_grpc_request(raw=()), INVALID),
    "no-inputs": (_without_inputs(), INVALID),
    "two-inputs": (_two_inputs(), INVALID),
    "input-name-unknown": (_grpc_request(name="x"), INVALID),
    "output-unknown": (_grpc_request(outputs=[("scores", {})]), INVALID),
    "output-twice": (_grpc_request(outputs=[("logits", {}), ("logits", {})]), INVALID),
    "classification-string": (_grpc_request(outputs=[("logits", {"classification": "2"})]), INVALID),
    "classification-bool": (_grpc_request(outputs=[("logits", {"classification": True})]), INVALID),
    "classification-negative": (_grpc_request(outputs=[("logits", {"classification": -1})]), INVALID),
    "classification-float": (_grpc_request(outputs=[("logits", {"classification": 2.0})]), INVALID),
    "model-unknown": (_grpc_request(model="nope"), NOT_FOUND),
    "version-unknown": (_grpc_request(version="7"), NOT_FOUND),
}


@pytest.mark.parametrize("case", list(GRPC_CASES))
def test_malformed_grpc_requests_set_a_client_error_status(local_hub, case):
    request, code = GRPC_CASES[case]
    context = Context()
    reply = asyncio.run(GrpcService(local_hub).call("ModelInfer", request, context))
    assert context.code == code and context.details, (context.code, context.details)
    assert reply == pb.ModelInferResponse()


def test_a_grpc_inference_past_the_request_deadline_is_deadline_exceeded(local_hub):
    class StuckHub:
        settings = local_hub.settings.model_copy(update={"request_timeout_s": 0.2})
        models = local_hub.models

        async def infer(self, name, pixels):
            await asyncio.sleep(3600)

    context = Context()
    start = time.monotonic()
    call = GrpcService(StuckHub()).call("ModelInfer", _grpc_request(), context)
    reply = asyncio.run(asyncio.wait_for(call, 5))  # the test's own bound: TimeoutError if the service has none
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED and "0.2" in context.details
    assert reply == pb.ModelInferResponse() and time.monotonic() - start < 2
