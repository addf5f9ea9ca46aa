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
    return json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                   "data": [0.5] * n}]}).encode() + b" " * pad


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
    r = client.post("/v2/models/tiny/infer", content=_body([1, 1, 8, 8], pad),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert seen == [on_loop]


@pytest.mark.parametrize("ndim", [0, 5, 65, 200])
def test_shapes_with_too_many_or_no_dimensions_are_400(client, ndim):
    body = json.dumps({"inputs": [{"name": "input", "shape": [1] * ndim, "datatype": "FP32", "data": [0.5]}]})
    r = client.post("/v2/models/tiny/infer", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "dimensions" in r.json()["error"]
