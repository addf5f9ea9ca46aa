"""The fast HTTP front: single-image `/predict` answered without FastAPI's per-request machinery.

Why: profiled at saturation on 2 cores (BENCHMARKS.md, "Serving one image per request"), a replica
spent 29% of its CPU in FastAPI/Starlette (routing, dependency injection, response encoding) and 27%
in Ray Serve's request wrapper, against 33% in ONNX Runtime. This plain ASGI app answers
`POST /v2/models/{name}/predict` itself through `predict_upload`, the function the FastAPI route
calls (same body limits, image guards, errors and JSON), and hands every other request (OIP
`/infer`, metadata, health, docs, and any `/predict` whose query it does not parse) to the FastAPI
app unchanged. It also bounds the requests in flight (503 + Retry-After beyond), the job Ray Serve's
`max_ongoing_requests` / `max_queued_requests` do on the Serve path, and how long each one may take
(`request_timeout_s`, then 408), the job of Serve's `request_timeout_s`. No Ray here.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Awaitable, Callable, Optional

from starlette.requests import Request

from cnnsweep.serving.errors import HttpError
from cnnsweep.serving.http_app import MAX_TOP_K, Hub, build_http_app, internal_error, predict_upload, within_deadline

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
PREDICT_PATH = re.compile(r"/v2/models/([^/]+)/predict")
DELEGATE = object()  # a query this front does not parse: FastAPI answers it (and phrases its errors)


def parse_top_k(query: bytes) -> Any:
    """`?top_k=N` (1 <= N <= MAX_TOP_K) -> N, no query -> None, anything else -> DELEGATE."""
    if not query:
        return None
    key, _, value = query.partition(b"=")
    if key == b"top_k" and value.isdigit() and len(value) <= 4 and 1 <= int(value) <= MAX_TOP_K:
        return int(value)
    return DELEGATE


async def send_json(send: Callable, status: int, content: Any, headers: Optional[list] = None) -> None:
    """The bytes Starlette's JSONResponse would send (compact, UTF-8), without building one."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def admission_limit(settings) -> Optional[int]:
    """Requests one front admits at once: Serve's in-flight + queued bounds (None = unbounded)."""
    if settings.max_queued_requests < 0:
        return None
    return settings.max_ongoing_requests + settings.max_queued_requests


def build_fast_app(hub: Hub, fallback: Optional[ASGIApp] = None) -> ASGIApp:
    """The ASGI app of one fast front (one event loop, so one heavy-work semaphore)."""
    settings = hub.settings
    fallback = fallback or build_http_app(hub)
    heavy = asyncio.Semaphore(settings.max_heavy_requests)
    limit = admission_limit(settings)
    retry = [] if settings.retry_after_s is None else [(b"retry-after", f"{settings.retry_after_s:g}".encode())]
    in_flight = 0

    async def predict(name: str, k: Optional[int], scope: dict, receive: Callable, send: Callable) -> None:
        try:
            content, status = await predict_upload(hub, name, Request(scope, receive), k, heavy), 200
        except HttpError as exc:
            content, status = {"error": exc.message}, exc.status
        except Exception as exc:  # the FastAPI app's catch-all, same answer
            content, status = internal_error(scope["path"], exc), 500
        await send_json(send, status, content)

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        nonlocal in_flight
        if scope["type"] != "http":  # lifespan, websockets: FastAPI's business
            return await fallback(scope, receive, send)
        if limit is not None and in_flight >= limit:
            return await send_json(send, 503, {"error": f"server is overloaded ({in_flight} requests in flight): "
                                                        f"retry later"}, retry)
        in_flight += 1
        try:
            match = PREDICT_PATH.fullmatch(scope["path"]) if scope["method"] == "POST" else None
            k = parse_top_k(scope["query_string"]) if match else DELEGATE
            if k is DELEGATE:  # the FastAPI app bounds its requests itself (RequestDeadline)
                await fallback(scope, receive, send)
            else:
                await within_deadline(lambda *asgi: predict(match.group(1), k, *asgi), scope, receive, send,
                                      settings.request_timeout_s)
        finally:
            in_flight -= 1

    return app
