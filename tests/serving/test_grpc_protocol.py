"""The gRPC protocol without Ray or a server: a plain in-process hub, a context that records the status.
Raw and typed contents decode to the pixels the model file runs on; client mistakes set a status."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from cnnsweep.export import OnnxRunner  # noqa: E402
from cnnsweep.serving.grpc_messages import pb  # noqa: E402
from cnnsweep.serving.grpc_service import GrpcService  # noqa: E402


class Context:
    def __init__(self):
        self.code, self.details = None, None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


@pytest.fixture(scope="module")
def service(local_hub):
    return GrpcService(local_hub)


def _call(service, method, request):
    context = Context()
    reply = asyncio.run(service.call(method, request, context))
    return reply, context


PIXELS = (np.arange(128, dtype=np.uint8) * 2).reshape(2, 8, 8, 1)


def _uint8_request(raw: bool) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="tiny")
    inp = req.inputs.add(name="image", datatype="UINT8", shape=[2, 8, 8, 1])
    if raw:
        req.raw_input_contents.append(PIXELS.tobytes())
    else:
        inp.contents.uint_contents.extend(PIXELS.reshape(-1).tolist())
    req.outputs.add(name="logits")
    req.outputs.add(name="probabilities")
    return req


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "contents"])
def test_uint8_pixels_give_the_model_files_logits(service, tiny_onnx, raw):
    expected = OnnxRunner.load(tiny_onnx).logits(PIXELS)
    reply, context = _call(service, "ModelInfer", _uint8_request(raw))
    assert context.code is None
    logits = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(2, 3)
    probs = np.frombuffer(reply.raw_output_contents[1], "<f4").reshape(2, 3)
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    z = np.exp(expected / service.hub.models["tiny"].info.temperature)
    np.testing.assert_allclose(probs, z / z.sum(1, keepdims=True), atol=1e-6)
    assert [o.name for o in reply.outputs] == ["logits", "probabilities"] and list(reply.outputs[0].shape) == [2, 3]


def test_a_client_mistake_sets_a_status_and_returns_an_empty_reply(service):
    req = _uint8_request(raw=True)
    req.inputs[0].datatype = "BOOL"
    reply, context = _call(service, "ModelInfer", req)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "BOOL" in context.details
    assert reply == pb.ModelInferResponse()
    reply, context = _call(service, "ModelMetadata", pb.ModelMetadataRequest(name="nope"))
    assert context.code == grpc.StatusCode.NOT_FOUND and reply == pb.ModelMetadataResponse()


def test_fp32_tensors_are_refused_with_a_clear_status(service):
    """The model file reads raw pixels: a normalized FP32 tensor is refused, under either name."""
    x = np.zeros((1, 1, 8, 8), "<f4")
    for name, word in (("input", "unknown input 'input'"), ("image", "datatype 'FP32' is not supported")):
        req = pb.ModelInferRequest(model_name="tiny")
        req.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
        req.raw_input_contents.append(x.tobytes())
        reply, context = _call(service, "ModelInfer", req)
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT and word in context.details, context.details
        assert reply == pb.ModelInferResponse()


def test_uint8_contents_above_255_are_invalid(service):
    req = _uint8_request(raw=False)
    req.inputs[0].contents.uint_contents[0] = 256
    _, context = _call(service, "ModelInfer", req)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "0..255" in context.details


@pytest.mark.parametrize("side, most", [(8, 4), (130, 1)])
def test_images_larger_than_the_model_hold_a_heavy_slot_through_inference(counting_hub, side, most):
    """As over HTTP: raw pixels the batch must resize (~20 bytes per pixel) run at most
    `max_heavy_requests` at once; images of the model's own size batch freely."""
    hub = counting_hub(max_heavy=1)
    service = GrpcService(hub)

    def request():
        req = pb.ModelInferRequest(model_name="tiny")
        req.inputs.add(name="image", datatype="UINT8", shape=[1, side, side, 1])
        req.raw_input_contents.append(bytes(side * side))
        return req

    async def four_at_once():
        contexts = [Context() for _ in range(4)]
        await asyncio.gather(*[service.call("ModelInfer", request(), c) for c in contexts])
        return contexts

    assert all(c.code is None for c in asyncio.run(four_at_once()))
    assert hub.most == most
