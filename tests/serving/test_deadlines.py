"""Whole-request deadlines without Ray, over raw sockets against a real uvicorn server on 127.0.0.1: a
client dripping its body (one byte just inside the per-read deadline) is answered 408 (or cut off)
within the deadline, and its slot is free for the next request. The server is the FastAPI app under
a plain uvicorn, as Serve's proxy runs it; what that uvicorn does not bound
(a dripping request head) is in serve/README.md."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import uvicorn
from PIL import Image

from cnnsweep.serving.http_app import build_http_app
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import build_settings

READ_S = 0.5  # per-read deadline, seconds: the drip below sends a byte every DRIP_S < READ_S
REQUEST_S = 2.0  # whole-request deadline, seconds
DRIP_S = 0.3
SLACK_S = 1.5  # scheduling on a busy 2-core box
SLOTS = 4  # drips at once (= max_ongoing_requests)
SETTINGS = {"max_batch_size": 4, "max_ongoing_requests": SLOTS, "max_queued_requests": 0, "read_timeout_s": READ_S,
            "request_timeout_s": REQUEST_S}
INFER = "/v2/models/tiny/infer"
PREDICT = "/v2/models/tiny/predict"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


GOOD = {INFER: (json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "UINT8",
                                        "data": [128] * 64}]}).encode(), "application/json"),
        PREDICT: (_png(), "image/png")}


class InProcessHub:
    def __init__(self, settings, model):
        self.settings, self.models = settings, {model.name: model}

    async def infer(self, name, pixels):
        return self.models[name].run(pixels)


class PlainUvicorn:
    """The FastAPI app under uvicorn's defaults (as Ray Serve runs it): no guards but the app's own."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def hub(tiny_onnx):
    settings = build_settings({"models": [str(tiny_onnx)], **SETTINGS})
    return InProcessHub(settings, load_served_model(settings.models[0], 1))


@pytest.fixture(scope="module")
def server(hub):
    srv = PlainUvicorn(build_http_app(hub))
    yield srv.port
    srv.stop()


def _answer(conn: socket.socket, until: float) -> tuple[bytes, float]:
    """(what the server sends before `until` (monotonic) or closes, when its first byte or the close
    came); (b"", until) if neither. An answer ends at its JSON body's closing brace."""
    out, first = b"", None
    while time.monotonic() < until and not out.endswith(b"}"):
        if not select.select([conn], [], [], max(0.0, until - time.monotonic()))[0]:
            break
        try:
            chunk = conn.recv(65536)
        except ConnectionError:
            chunk = b""
        first = first or time.monotonic()
        if not chunk:
            break
        out += chunk
    return out, first or until


def _drip(port: int, head: bytes, drip: bytes, cap_s: float) -> tuple[bytes, float]:
    """Send `head`, then `drip` one byte every DRIP_S until the server answers or closes (or `cap_s`
    passes): (answer, seconds from the first byte sent to the answer or the close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=cap_s) as conn:
        start = time.monotonic()
        try:
            conn.sendall(head)
            for i in range(len(drip)):
                if select.select([conn], [], [], DRIP_S)[0] or time.monotonic() - start > cap_s:
                    break
                conn.sendall(drip[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: the answer (if any) is still readable
        answer, when = _answer(conn, start + cap_s + 0.5)
        return answer, when - start


def _request_head(path: str, content_type: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _post_ok(port: int, path: str) -> None:
    body, ctype = GOOD[path]
    r = requests.post(f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", [INFER, PREDICT])
def test_a_slow_drip_body_is_cut_off_at_the_request_deadline_and_frees_its_slot(server, path):
    port = server
    cap = REQUEST_S + SLACK_S
    head = _request_head(path, GOOD[path][1], 100_000)
    with ThreadPoolExecutor(SLOTS) as pool:  # every slot held by a drip
        answers = list(pool.map(lambda _: _drip(port, head, b"x" * 1000, cap + 5), range(SLOTS)))
    for answer, seconds in answers:
        assert seconds < cap, (seconds, answer)
        assert answer == b"" or (answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer), answer
    assert any(answer for answer, _ in answers), "at least one drip gets a 408, not just a closed socket"
    _post_ok(port, path)  # the slots are free again
