"""Body guards without Ray: JSON depth measured outside strings, per-read deadline (408)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from cnnsweep.serving.body import json_depth, parse_json, read_body
from cnnsweep.serving.http_error import HttpError


@pytest.mark.parametrize("text", [
    '[[1]]', '{"a": "[[[", "b": [[2]]}', '["\\\\", [[1]]]', '["\\"]", [[1]]]', '"[["', '[]', '{"k": "}}}}"}',
    '["a\\\\\\"]]]", [[[0]]]]',
])
def test_json_depth_equals_the_real_nesting(text):
    def real(v):
        return 1 + max(map(real, v.values() if isinstance(v, dict) else v), default=0) \
            if isinstance(v, (list, dict)) else 0
    assert json_depth(text.encode()) == real(json.loads(text))


def test_closing_brackets_inside_strings_cannot_hide_a_901_deep_body():
    body = ('["]",' * 901 + "0" + "]" * 901).encode()
    json.loads(body)  # valid JSON, 901 levels deep
    assert json_depth(body) == 901
    with pytest.raises(HttpError) as err:
        parse_json(body, 32)
    assert err.value.status == 400 and "901" in err.value.message


def _request(chunks: list[bytes], stall_after: int, headers=()) -> Request:
    """An ASGI request whose client sends `stall_after` chunks and then goes silent."""
    sent = 0

    async def receive():
        nonlocal sent
        if sent >= stall_after:
            await asyncio.sleep(3600)
        sent += 1
        return {"type": "http.request", "body": chunks[sent - 1], "more_body": sent < len(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": list(headers), "query_string": b""}
    return Request(scope, receive)


def test_a_client_that_stops_sending_gets_408_within_the_read_deadline():
    async def go():
        req = _request([b"{", b"}"], stall_after=1)
        return await asyncio.wait_for(read_body(req, 1024, read_timeout_s=0.2), 5)

    with pytest.raises(HttpError) as err:
        asyncio.run(go())
    assert err.value.status == 408


def test_a_body_in_several_prompt_chunks_is_read_whole():
    async def go():
        return await read_body(_request([b'{"a"', b": 1", b"}"], stall_after=99), 1024, read_timeout_s=0.2)

    assert asyncio.run(go()) == b'{"a": 1}'


def _dripping_request(every_s: float) -> Request:
    """An ASGI request whose client sends one byte every `every_s` seconds, forever."""
    async def receive():
        await asyncio.sleep(every_s)
        return {"type": "http.request", "body": b" ", "more_body": True}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}, receive)


def test_a_body_dripped_inside_the_read_deadline_gets_408_at_the_body_deadline():
    async def go():
        start = asyncio.get_running_loop().time()
        with pytest.raises(HttpError) as err:
            await asyncio.wait_for(read_body(_dripping_request(0.05), 1 << 20, read_timeout_s=0.2,
                                             body_timeout_s=0.5), 5)
        return err.value, asyncio.get_running_loop().time() - start

    err, seconds = asyncio.run(go())
    assert err.status == 408 and "too long" in err.message
    assert 0.5 <= seconds < 1.5


@pytest.mark.parametrize("length", ["²", "12a", "-1", "1e3", "", " ", "0x10", "١٢"])
def test_a_content_length_that_is_not_ascii_digits_is_400(length):
    req = _request([b"{}"], stall_after=99, headers=[(b"content-length", length.encode("latin-1", "replace"))])
    with pytest.raises(HttpError) as err:
        asyncio.run(read_body(req, 1024, read_timeout_s=0.2))
    assert err.value.status == 400 and "Content-Length" in err.value.message
