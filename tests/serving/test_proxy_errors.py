"""The proxy middleware without Ray: plain-text error answers become {"error": ...} JSON, the rest
passes through untouched."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from cnnsweep.serving.proxy_errors import JsonErrorBodies, StripServeHints, proxy_middlewares


def _client() -> TestClient:
    async def shed(request):  # what Ray Serve's proxy sends when max_queued_requests is reached
        return PlainTextResponse("Request dropped due to backpressure (num_queued_requests=2).", 503,
                                 headers={"Retry-After": "1"})

    async def slow(request):
        return PlainTextResponse("Request 1234 timed out after 30.0s.", 408)

    async def ok(request):
        return JSONResponse({"a": 1})

    async def text(request):
        return PlainTextResponse("fine")

    routes = [Route("/shed", shed), Route("/slow", slow), Route("/ok", ok), Route("/text", text)]
    return TestClient(Starlette(routes=routes, middleware=[Middleware(JsonErrorBodies)]))


def test_proxy_503_and_408_become_json_with_headers_kept():
    c = _client()
    r = c.get("/shed")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.headers["content-type"] == "application/json" and "backpressure" in r.json()["error"]
    r = c.get("/slow")
    assert r.status_code == 408 and r.json() == {"error": "Request 1234 timed out after 30.0s."}
    r = c.get("/nowhere")  # Starlette's own plain-text 404, like the proxy's unknown-route answer
    assert r.status_code == 404 and r.json()["error"]


def test_other_answers_pass_through():
    c = _client()
    assert c.get("/ok").json() == {"a": 1}
    assert c.get("/text").text == "fine"


def test_the_proxy_callback_returns_starlette_middlewares():
    assert [m.cls for m in proxy_middlewares()] == [StripServeHints, JsonErrorBodies]


def test_a_client_cannot_lift_the_proxys_deadline_with_serve_hint_headers():
    """Ray 2.60's proxy (and direct-ingress replica) reads `x-request-timeout-seconds` from the request:
    0 turns its whole-request deadline off, 1e9 makes it 30 years. Only a trusted balancer may set it."""
    async def echo(request):
        return JSONResponse(sorted(request.headers.keys()))

    app = Starlette(routes=[Route("/echo", echo)], middleware=proxy_middlewares())
    sent = {"x-request-timeout-seconds": "0", "X-Request-Disconnect-Disabled": "?1", "x-request-id": "abc",
            "content-type": "application/json"}
    seen = TestClient(app).get("/echo", headers=sent).json()
    assert "x-request-timeout-seconds" not in seen and "x-request-disconnect-disabled" not in seen
    assert {"x-request-id", "content-type"} <= set(seen)
