"""The fast HTTP front's server: uvicorn (httptools + uvloop when installed) on its own thread and event
loop, on a socket several processes can share.

Each Ray Serve replica started with `fast_port` runs one (`distributed/serve/deployment.py`); the
replicas of a node bind the same port with SO_REUSEPORT, so the kernel spreads incoming connections
over them: one stable port per node, no proxy process in the path. Linux allows the shared bind only
between sockets of the same user that all set SO_REUSEPORT, so another user's process cannot take
over the port. No Ray here: a test or a script can run it around any `Hub`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import Executor
from http import HTTPStatus
from typing import Optional

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from cnnsweep.serving.batcher import BatchingHub
from cnnsweep.serving.fast_app import build_fast_app
from cnnsweep.serving.model import ServedModel
from cnnsweep.serving.settings import ServeConfigError, ServeSettings

BACKLOG = 2048  # pending connections per socket (uvicorn's default)
KEEP_ALIVE_S = 5  # idle keep-alive connections close after this, seconds (uvicorn's default)
# Request line + headers, bytes -> 431. uvicorn (httptools) buffers a head of any size; real clients
# send under 8 KiB (nginx's default buffers: 4 x 8 KiB).
MAX_HEAD_BYTES = 64 * 1024


class HeadTooLarge(Exception):
    """Raised from httptools' header callbacks: the parser stops, uvicorn answers through send_400_response."""


class GuardedHttpProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP protocol plus what it lacks: each request head (request line + headers) must
    arrive within `head_timeout_s` of its first byte (a new connection: of connecting), else 408 and
    close; it may be at most MAX_HEAD_BYTES, else 431 and close (h11, if httptools is missing, caps
    heads itself at 16 KiB); and uvicorn's own plain-text 400s for malformed requests (bad
    Content-Length, bad chunking) are `{"error": ...}` JSON. uvicorn waits for a head forever, so a
    client that connects and drips (or sends nothing) would hold a connection; the app's deadline
    (`request_timeout_s`) only starts once the head is in."""

    head_timeout_s: float = 10.0  # set per server by `guarded_protocol`

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_bytes, self._head_begun, self._too_large = 0, False, False
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._serving():  # the head is complete: from here the app's deadline bounds the request
            self._cancel_head_timer()
            self._head_begun = False
            return
        self._head_begun = self._head_begun or not self._leftover_body()
        self._arm_head_timer()

    # httptools' parser callbacks: count the head as it is parsed
    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            self._too_large = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            return self._answer_and_close(431, f"request head is over {MAX_HEAD_BYTES:,} bytes")
        self._answer_and_close(400, f"malformed HTTP request ({msg.rstrip('.')})")

    def _serving(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _leftover_body(self) -> bool:
        """The app answered (e.g. 413) before reading the whole body, which is still arriving."""
        return self.cycle is not None and self.cycle.response_complete and self.cycle.more_body

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._serving():
            return
        if self._head_begun:  # say why the request is dropped
            return self._answer_and_close(408, f"request head not received within {self.head_timeout_s:g} s")
        self.transport.close()  # nothing begun (or an answered request's body): nobody to tell

    def _answer_and_close(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.transport.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()


def guarded_protocol(head_timeout_s: float) -> type:
    """A `GuardedHttpProtocol` class with this head deadline, seconds (uvicorn builds one per connection)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"head_timeout_s": head_timeout_s})


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket on host:port with SO_REUSEPORT (Linux: every process of this user binding it the
    same way shares the port); ServeConfigError if something else holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeConfigError(f"fast HTTP port {host}:{port} cannot be bound ({err.strerror}): another "
                               f"program holds it; choose another --fast-port") from None
    sock.setblocking(False)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail early (in the driver, before any replica starts) if host:port cannot be shared."""
    bind_shared(host, port).close()


class FastServer:
    """uvicorn serving `app` on `sock` from a daemon thread; `start()` returns once it listens."""

    def __init__(self, app, sock: socket.socket, head_timeout_s: float = 10.0):
        self.sock = sock
        # proxy_headers off: no proxy sits in front of this port, and the middleware costs per request
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", proxy_headers=False,
                                backlog=BACKLOG, timeout_keep_alive=KEEP_ALIVE_S, server_header=False,
                                http=guarded_protocol(head_timeout_s))
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                        name="cnnsweep-fast-http", daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.server.should_exit

    def start(self, timeout_s: float = 30.0) -> "FastServer":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fast HTTP server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, finish what is in flight (up to `timeout_s`), close the socket."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.sock.close()


def start_fast_server(settings: ServeSettings, models: dict[str, ServedModel], executor: Executor,
                      port: Optional[int] = None) -> FastServer:
    """The fast front for `models` on settings.fast_host:fast_port (or `port`), batching on `executor`."""
    hub = BatchingHub(settings, models, executor)
    sock = bind_shared(settings.fast_host, settings.fast_port if port is None else port)
    return FastServer(build_fast_app(hub), sock, head_timeout_s=settings.read_timeout_s).start()
