"""The FastAPI app without Ray (a plain in-process hub): large bodies are parsed off the event loop,
and out-of-range shapes are 4xx."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnnsweep.serving import http_app


@pytest.fixture(scope="module")
def client(local_hub):
    with TestClient(http_app.build_http_app(local_hub)) as c:
        yield c


def _body(shape, pad: int = 0) -> bytes:
    n = int(np.prod(shape))
    return json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8",
                                   "data": [128] * n}]}).encode() + b" " * pad


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("pad, on_loop", [(0, True), (http_app.INLINE_BODY_BYTES, False)])
def test_large_json_bodies_are_parsed_off_the_event_loop(client, monkeypatch, pad, on_loop):
    seen = []
    real = http_app.parse_infer_request

    def spy(*args):
        seen.append(_on_event_loop())
        return real(*args)

    monkeypatch.setattr(http_app, "parse_infer_request", spy)
    r = client.post("/v2/models/tiny/infer", content=_body([1, 8, 8, 1], pad),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert seen == [on_loop]


@pytest.mark.parametrize("ndim", [0, 5, 65, 200])
def test_shapes_with_too_many_or_no_dimensions_are_400(client, ndim):
    body = json.dumps({"inputs": [{"name": "image", "shape": [1] * ndim, "datatype": "UINT8", "data": [128]}]})
    r = client.post("/v2/models/tiny/infer", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "dimensions" in r.json()["error"]


def _four_at_once(app, path: str, content: bytes, headers: dict) -> list:
    import httpx

    async def post_all():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await asyncio.gather(*[client.post(path, content=content, headers=headers) for _ in range(4)])

    return asyncio.run(post_all())


def _png(side: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# 8 x 8: the model's own size; 130 x 130: above INLINE_PIXELS (decoded off the loop) and resized
@pytest.mark.parametrize("side, most", [(8, 4), (130, 1)])
def test_images_larger_than_the_model_hold_a_heavy_slot_through_inference(counting_hub, side, most):
    """Raw pixels larger than the model's input are resized in the batch's inference (~20 bytes per
    pixel): such /infer requests run at most `max_heavy_requests` at once, so a replica's memory stays
    within ServeSettings.worst_case_bytes; images the model reads as they are batch freely."""
    hub = counting_hub(max_heavy=1)
    x = np.zeros((1, side, side, 1), np.uint8)
    head = json.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "UINT8",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    answers = _four_at_once(http_app.build_http_app(hub), "/v2/models/tiny/infer", head + x.tobytes(),
                            {"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(head))})
    assert [r.status_code for r in answers] == [200] * 4, answers[0].text
    assert hub.most == most


@pytest.mark.parametrize("side, most", [(8, 4), (130, 1)])
def test_uploads_larger_than_the_model_hold_a_heavy_slot_through_inference(counting_hub, side, most):
    hub = counting_hub(max_heavy=1)
    answers = _four_at_once(http_app.build_http_app(hub), "/v2/models/tiny/predict", _png(side),
                            {"Content-Type": "image/png"})
    assert [r.status_code for r in answers] == [200] * 4, answers[0].text
    assert hub.most == most


def test_an_upload_above_inline_pixels_at_the_models_size_is_batched_freely(tmp_path, counting_hub):
    """A model that reads 140 x 140 images: uploads of that size are decoded under `heavy`, then
    released before inference (no more memory than the model input), so they still share batches."""
    from cnnsweep.config import ModelConfig
    from cnnsweep.export import OnnxModelInfo, export_onnx
    from cnnsweep.models import build_model
    from cnnsweep.serving.model import load_served_model
    from cnnsweep.serving.settings import ModelSpec
    from cnnsweep.transforms import Preprocess

    pre = Preprocess(source_size=(140, 140), source_channels=1, mean=(0.5,), std=(0.2,))
    net = build_model(ModelConfig(num_stages=1, width=4, convs_per_stage=1), 3, 1, 140).eval()
    path = export_onnx(net, OnnxModelInfo(["a", "b", "c"], pre), tmp_path / "big.onnx")
    hub = counting_hub(max_heavy=1)
    hub.models = {"big": load_served_model(ModelSpec(path=str(path)), 1)}
    answers = _four_at_once(http_app.build_http_app(hub), "/v2/models/big/predict", _png(140),
                            {"Content-Type": "image/png"})
    assert [r.status_code for r in answers] == [200] * 4, answers[0].text
    assert hub.most == 4
