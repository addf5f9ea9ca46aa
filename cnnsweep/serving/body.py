"""Reading request bodies defensively: a size cap (413) and JSON with a nesting limit (400).

FastAPI's own body parsing reads everything into memory first and hands nested JSON to a
recursive decoder; here the cap is enforced while streaming, and nesting is measured on the raw
bytes before any decoder recurses.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from starlette.requests import Request

from cnnsweep.serving.errors import HttpError, bad_request

_DEPTH_STEP = np.zeros(256, np.int8)  # byte -> +1 for [ and {, -1 for ] and }, 0 otherwise
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1


def _declared_length(request: Request) -> int | None:
    text = request.headers.get("content-length")
    if text is None:
        return None
    if not text.strip().isdigit():
        raise bad_request(f"Content-Length {text!r} is not a number")
    return int(text)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes (before reading it all)."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise HttpError(413, f"request body is {declared:,} bytes; the limit is {limit:,}")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise HttpError(415, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise bad_request("request body is empty")
    return body


def json_depth(data: bytes) -> int:
    """Deepest [ / { nesting in `data` (brackets inside strings count too: a safe over-estimate)."""
    steps = _DEPTH_STEP[np.frombuffer(data, np.uint8)]
    return int(steps.cumsum(dtype=np.int32).max(initial=0)) if len(steps) else 0


def parse_json(data: bytes, max_depth: int) -> Any:
    """bytes -> JSON value, refusing deep nesting before the (recursive) decoder sees it."""
    depth = json_depth(data)
    if depth > max_depth:
        raise bad_request(f"JSON is nested {depth} levels deep; the limit is {max_depth}")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise bad_request(f"body is not valid JSON: {err}") from None
