"""ASGI middlewares for Ray Serve's HTTP proxy: its own plain-text error answers (503 shed under
overload, 408 past `request_timeout_s`, 404 for an unknown route) become `{"error": "..."}` JSON like
every answer of the app itself, and a client cannot lift its `request_timeout_s` with Serve's
per-request hint headers.

Installed by `cnnsweep serve` through `http_options.middlewares`; for `serve run` / KubeRay set
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=cnnsweep.distributed.serve.proxy_setup:proxy_middlewares on the
nodes. No Ray import: it only sees ASGI messages.
"""

from __future__ import annotations

import json

from starlette.middleware import Middleware


# Per-request hints Ray Serve 2.60's proxy reads from the request headers,
# meant for a trusted load balancer (HAProxy): `x-request-timeout-seconds: 0` turns the whole-request
# deadline (request_timeout_s) off for that request, and the other keeps a request running after its
# client has gone. Sent by a client, they would lift the deadline a slow-drip client is stopped by.
SERVE_HINT_HEADERS = (b"x-request-timeout-seconds", b"x-request-disconnect-disabled")


class StripServeHints:
    """ASGI middleware: drops SERVE_HINT_HEADERS from each request before the proxy reads them."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", ())
        if scope["type"] in ("http", "websocket") and any(k.lower() in SERVE_HINT_HEADERS for k, _ in headers):
            scope = {**scope, "headers": [(k, v) for k, v in headers if k.lower() not in SERVE_HINT_HEADERS]}
        await self.app(scope, receive, send)


class JsonErrorBodies:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict | None = None
        parts: list[bytes] = []

        async def rewrite(message):
            nonlocal start
            if message["type"] == "http.response.start" and _is_plain_error(message):
                start = message  # hold it back until the whole text body is in
                return None
            if start is None:
                return await send(message)
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            await _send_json(send, start, b"".join(parts))

        await self.app(scope, receive, rewrite)


def _is_plain_error(start: dict) -> bool:
    headers = dict((k.lower(), v) for k, v in start.get("headers", []))
    return start["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"text/plain")


async def _send_json(send, start: dict, text: bytes) -> None:
    body = json.dumps({"error": text.decode("utf-8", "replace").strip() or f"HTTP {start['status']}"}).encode()
    kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
    headers = kept + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": start["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def proxy_middlewares() -> list[Middleware]:
    """For RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH (a callable returning Starlette middlewares, each
    wrapped around the proxy, so each sees a request before the proxy reads its headers)."""
    return [Middleware(StripServeHints), Middleware(JsonErrorBodies)]
