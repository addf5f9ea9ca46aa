"""Reading request bodies defensively: a size cap (413), a per-read and a whole-body deadline (408)
and JSON with a nesting limit (400).

FastAPI's own body parsing reads everything into memory first and hands nested JSON to a
recursive decoder; here the cap is enforced while streaming, each read must arrive within a deadline
and the whole body within another (a client trickling one byte just inside the per-read deadline
cannot hold a request slot), and nesting is measured on the raw bytes before any decoder recurses.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from starlette.requests import ClientDisconnect, Request

from cnnsweep.serving.http_error import HttpError, bad_request

_DEPTH_STEP = np.zeros(256, np.int8)  # byte -> +1 for [ and {, -1 for ] and }, 0 otherwise
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1
_QUOTE = ord('"')


def declared_int(name: str, text: str) -> int:
    """A header's whole number (ASCII digits only: str.isdigit() also accepts "²", which int() refuses)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise bad_request(f"{name} {text!r} is not a whole number")
    return int(text)


def _declared_length(request: Request) -> int | None:
    text = request.headers.get("content-length")
    return None if text is None else declared_int("Content-Length", text)


async def _next_chunk(stream, read_timeout_s: float, body_deadline: float) -> bytes | None:
    """The next body chunk, None at the end; 408 if the client sends nothing for `read_timeout_s`
    seconds, or the body is not all in by `body_deadline` (event-loop time)."""
    left = body_deadline - asyncio.get_running_loop().time()
    wait = min(read_timeout_s, left)
    try:
        if wait <= 0:
            raise asyncio.TimeoutError
        if not hasattr(asyncio, "timeout"):  # Python 3.10
            return await asyncio.wait_for(stream.__anext__(), wait)
        async with asyncio.timeout(wait):  # 3.11+; wait_for costs a Task per chunk
            return await stream.__anext__()
    except StopAsyncIteration:
        return None
    except asyncio.TimeoutError:
        if wait < read_timeout_s:
            raise HttpError(408, "the request body took too long to arrive: send it promptly") from None
        raise HttpError(408, f"no body data for {read_timeout_s:g} s: send the request body promptly") from None
    except ClientDisconnect:
        raise HttpError(400, "client disconnected before sending the whole body") from None


async def read_body(request: Request, limit: int, read_timeout_s: float = 10.0, body_timeout_s: float = 30.0) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes (before reading it all),
    or 408 when one read waits longer than `read_timeout_s` seconds or the whole body takes longer
    than `body_timeout_s`."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise HttpError(413, f"request body is {declared:,} bytes; the limit is {limit:,}")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise HttpError(415, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    chunks, size, stream = [], 0, request.stream()
    deadline = asyncio.get_running_loop().time() + body_timeout_s
    while (chunk := await _next_chunk(stream, read_timeout_s, deadline)) is not None:
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk (the usual case): no copy
    if not body:
        raise bad_request("request body is empty")
    return body


def _outside_strings(data: bytes) -> np.ndarray:
    """uint8 view of `data` with every byte inside a JSON string (quotes included) zeroed.

    Escapes first: `\\\\` and `\\"` can never open or close a string, so they are blanked (left to right,
    as a JSON decoder reads them); every quote left toggles in/out of a string."""
    raw = np.frombuffer(data.replace(b"\\\\", b"  ").replace(b'\\"', b"  "), np.uint8)
    quotes = raw == _QUOTE
    inside = (np.cumsum(quotes, dtype=np.int64) & 1).astype(bool) | quotes  # open quote .. before close
    return np.where(inside, 0, raw).astype(np.uint8)


def json_depth(data: bytes) -> int:
    """Deepest [ / { nesting in `data`, ignoring brackets inside strings (so `"]"` cannot hide depth)."""
    if not data:
        return 0
    steps = _DEPTH_STEP[_outside_strings(data)]
    return int(steps.cumsum(dtype=np.int32).max(initial=0))


def parse_json(data: bytes, max_depth: int) -> Any:
    """bytes -> JSON value, refusing deep nesting before the (recursive) decoder sees it."""
    depth = json_depth(data)
    if depth > max_depth:
        raise bad_request(f"JSON is nested {depth} levels deep; the limit is {max_depth}")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise bad_request(f"body is not valid JSON: {err}") from None
