"""The fast HTTP front without Ray: a real uvicorn server on 127.0.0.1 answers /predict exactly like the
FastAPI app (same bytes, same errors), hands every other route to it, sheds load with 503 JSON, and
two servers share one port (SO_REUSEPORT) the way a node's replicas do."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

from cnnsweep.serving import fast_app
from cnnsweep.serving.batcher import BatchingHub
from cnnsweep.serving.fast_server import FastServer, bind_shared, start_fast_server
from cnnsweep.serving.http_app import build_http_app
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ServeConfigError, build_settings

SETTINGS = {"max_batch_size": 4, "max_ongoing_requests": 8, "max_queued_requests": 0, "max_body_bytes": 64 * 1024,
            "max_image_pixels": 10_000, "read_timeout_s": 1.0}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


GOOD = _png(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
PNG = {"Content-Type": "image/png"}
PREDICT = "/v2/models/tiny/predict"
CASES = [  # (id, path + query, requests kwargs): each answered by fast front and FastAPI alike
    ("raw-png", PREDICT, dict(data=GOOD, headers=PNG)),
    ("no-content-type", PREDICT, dict(data=GOOD)),
    ("multipart", PREDICT, dict(files={"file": ("a.png", GOOD, "image/png")})),
    ("top-k-2", PREDICT + "?top_k=2", dict(data=GOOD, headers=PNG)),
    ("top-k-0", PREDICT + "?top_k=0", dict(data=GOOD, headers=PNG)),
    ("top-k-text", PREDICT + "?top_k=many", dict(data=GOOD, headers=PNG)),
    ("top-k-huge", PREDICT + "?top_k=99999", dict(data=GOOD, headers=PNG)),
    ("other-query", PREDICT + "?foo=1", dict(data=GOOD, headers=PNG)),
    ("empty", PREDICT, dict(data=b"", headers=PNG)),
    ("not-an-image", PREDICT, dict(data=b"hello", headers=PNG)),
    ("json-type", PREDICT, dict(data=GOOD, headers={"Content-Type": "application/json"})),
    ("gzip", PREDICT, dict(data=GOOD, headers={**PNG, "Content-Encoding": "gzip"})),
    ("too-large", PREDICT, dict(data=b"\x89PNG" + b"\0" * (70 * 1024), headers=PNG)),
    ("too-many-pixels", PREDICT, dict(data=_png(np.zeros((200, 200), np.uint8)), headers=PNG)),
    ("unknown-model", "/v2/models/nope/predict", dict(data=GOOD, headers=PNG)),
    ("get-predict", PREDICT, dict(method="get")),
    ("metadata", "/v2/models/tiny", dict(method="get")),
    ("unknown-route", "/v3/x", dict(method="get")),
]


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return load_served_model(build_settings({"models": [str(tiny_onnx)]}).models[0], 1)


@pytest.fixture(scope="module")
def fronts(model):
    """(fast front URL, FastAPI TestClient) over the same model and settings."""
    settings = build_settings({"models": [str(model.path)], **SETTINGS})
    server = start_fast_server(settings, {model.name: model}, ThreadPoolExecutor(1), port=0)
    with TestClient(build_http_app(BatchingHub(settings, {model.name: model}, ThreadPoolExecutor(1)))) as client:
        yield f"http://127.0.0.1:{server.port}", client
    server.stop()
    assert not server.alive


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_answer_equals_the_fastapi_app(fronts, case):
    url, client = fronts
    _, path, kwargs = case
    method = kwargs.get("method", "post")
    kwargs = {k: v for k, v in kwargs.items() if k != "method"}
    fast = getattr(requests, method)(url + path, timeout=30, **kwargs)
    slow = getattr(client, method)(path, **{("content" if k == "data" else k): v for k, v in kwargs.items()})
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.headers["content-type"] == "application/json"
    if fast.status_code >= 400:
        assert fast.json()["error"]


def test_the_predict_route_skips_fastapi(fronts, monkeypatch):
    url, _ = fronts
    calls = []
    real = fast_app.predict_upload

    async def spy(*args):
        calls.append(args[1])
        return await real(*args)

    monkeypatch.setattr(fast_app, "predict_upload", spy)  # looked up at call time by the fast path only
    assert requests.post(url + PREDICT, data=GOOD, headers=PNG, timeout=30).status_code == 200
    assert requests.post(url + PREDICT + "?top_k=many", data=GOOD, headers=PNG, timeout=30).status_code == 400
    assert calls == ["tiny"]  # the second request (a query it does not parse) went to FastAPI


def test_concurrent_uploads_are_batched_and_answered_correctly(fronts, model):
    url, _ = fronts
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
    with ThreadPoolExecutor(8) as pool:  # within the admission limit (8 + 0 queued)
        answers = list(pool.map(lambda im: requests.post(url + PREDICT + "?top_k=1", data=_png(im), headers=PNG,
                                                          timeout=30).json(), images))
    expected = model.run(np.concatenate([model.prepare_pixels(im) for im in images])).argmax(1)
    assert [a["predictions"][0]["index"] for a in answers] == expected.tolist()


def test_a_stalled_body_gets_408_json(fronts):
    url, _ = fronts
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     f"Content-Length: 1000\r\n\r\n\x89PNG".encode())
        answer = b""
        while b'"}' not in answer and (chunk := conn.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer, answer


class SlowHub:
    """Each inference waits until `release` is set: requests pile up in flight."""

    def __init__(self, settings, model):
        self.settings, self.models, self.release = settings, {model.name: model}, threading.Event()

    async def infer(self, name, x):
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return self.models[name].run(x)

    async def infer_pixels(self, name, pixels):
        return await self.infer(name, self.models[name].prepare_pixels(pixels))


def test_beyond_the_admission_limit_requests_get_503_json_with_retry_after(model):
    settings = build_settings({"models": [str(model.path)], **SETTINGS, "max_ongoing_requests": 4,
                               "max_queued_requests": 2})
    hub = SlowHub(settings, model)
    server = FastServer(fast_app.build_fast_app(hub), bind_shared("127.0.0.1", 0)).start()
    url = f"http://127.0.0.1:{server.port}{PREDICT}"
    try:
        with ThreadPoolExecutor(12) as pool:
            pending = [pool.submit(requests.post, url, data=GOOD, headers=PNG, timeout=30) for _ in range(12)]
            time.sleep(1.0)  # all 12 arrive while none can finish: 4 + 2 admitted, 6 shed at once
            hub.release.set()
            answers = [f.result() for f in pending]
    finally:
        server.stop()
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 6 + [503] * 6, codes
    assert all(r.headers["retry-after"] == "1" and r.json()["error"] for r in answers if r.status_code == 503)


def _counting(app, counts: list, i: int):
    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            counts[i] += 1
        await app(scope, receive, send)

    return wrapped


def test_two_servers_share_one_port_and_the_kernel_spreads_connections(model):
    settings = build_settings({"models": [str(model.path)], **SETTINGS})
    hub = BatchingHub(settings, {model.name: model}, ThreadPoolExecutor(1))
    counts = [0, 0]
    first = FastServer(_counting(fast_app.build_fast_app(hub), counts, 0), bind_shared("127.0.0.1", 0)).start()
    second = FastServer(_counting(fast_app.build_fast_app(hub), counts, 1), bind_shared("127.0.0.1", first.port))
    second.start()
    try:
        for _ in range(40):  # a new connection each time: the kernel hashes it to one of the two listeners
            r = requests.post(f"http://127.0.0.1:{first.port}{PREDICT}", data=GOOD, headers={**PNG, "Connection": "close"},
                              timeout=30)
            assert r.status_code == 200
    finally:
        first.stop()
        second.stop()
    assert sum(counts) == 40 and min(counts) > 0, counts  # all on one: probability 2 ** -39


def test_a_port_held_without_sharing_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(ServeConfigError, match="cannot be bound.*--fast-port"):
            bind_shared("127.0.0.1", holder.getsockname()[1])


def test_per_batch_preprocessing_equals_one_image_at_a_time(model):
    images = np.random.default_rng(1).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    assert images.shape[1:] == model.native_pixels_shape  # gray model: H x W uploads
    one_by_one = np.concatenate([model.run(model.prepare_pixels(im)) for im in images])
    np.testing.assert_allclose(model.run_pixels(images), one_by_one, atol=1e-5)
