"""A lean HTTP/1.1 load-generator client for serve_load.py: pre-built request bytes, keep-alive
connections on asyncio streams, and only the status line and Content-Length parsed from each answer.

Why: aiohttp builds each request (headers, multidicts, a payload writer) and parses each answer in
Python, ~0.5 ms of CPU per request on these cores. With the load generator on the same 2 cores as
the server, that CPU is taken from the server, so its saturation throughput and tail latency measure
the client as much as the server. This client sends the same bytes for a fraction of the CPU
(serve_load.py reports `client_cpu_ms_per_request` for both, side by side).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"


class ServerClosed(ConnectionError):
    """The server closed a connection before it answered (keep-alive expiry, or after an error)."""


def build_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole POST as bytes (built once per body, reused for every request)."""
    u = urlsplit(url)
    lines = [f"POST {u.path or '/'} HTTP/1.1", f"Host: {u.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, server keeps the connection) from a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    return status, length, keep


class RawHttpPool:
    """At most `connections` keep-alive connections to one host:port; `post(request)` -> status."""

    def __init__(self, url: str, connections: int):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(connections)
        self.sent_by_local_port: Counter = Counter()  # requests per connection, for server_balance

    async def post(self, request: bytes) -> int:
        async with self.slots:
            reused = bool(self.free)
            conn = self.free.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                status, keep = await self._exchange(conn, request)
            except (ServerClosed, ConnectionResetError, BrokenPipeError):
                conn[1].close()
                if not reused:
                    raise
                # a reused connection the server had already closed (idle keep-alive expiry): what any
                # HTTP client does, send again on a new one
                conn = await asyncio.open_connection(self.host, self.port)
                status, keep = await self._exchange(conn, request)
            if keep:
                self.free.append(conn)
            else:
                conn[1].close()
            return status

    async def _exchange(self, conn, request: bytes) -> tuple[int, bool]:
        reader, writer = conn
        self.sent_by_local_port[writer.get_extra_info("sockname")[1]] += 1
        writer.write(request)
        try:
            head = await reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as err:
            raise ServerClosed("connection closed before the answer") from err
        status, length, keep = parse_head(head[:-4])
        if length:
            await reader.readexactly(length)
        return status, keep

    async def close(self) -> None:
        for _, writer in self.free:
            writer.close()
        self.free.clear()


SS_LINE = re.compile(r":(\d+)\s+\S+:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)")


def server_balance(pool: RawHttpPool) -> dict[str, dict[str, int]]:
    """Which server process answered how many of this pool's requests, over how many connections.

    Several processes share one port through SO_REUSEPORT and the kernel picks one per connection, so
    requests split as the connections did. `ss` names the process that owns each accepted socket
    (same machine only; run while the connections are still open). {} if `ss` is not there."""
    try:
        text = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{pool.port} )"],
                              capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    owner = {int(peer): pid for _, peer, pid in SS_LINE.findall(text)}  # client's port -> server pid
    out: dict[str, dict[str, int]] = {}
    for port, n in pool.sent_by_local_port.items():
        row = out.setdefault(owner.get(port, "closed"), {"connections": 0, "requests": 0})
        row["connections"] += 1
        row["requests"] += n
    return out
