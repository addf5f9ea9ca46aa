"""The fast HTTP front's server: uvicorn (httptools + uvloop when installed) on its own thread and event
loop, on a socket several processes can share.

Each Ray Serve replica started with `fast_port` runs one (`distributed/serve/deployment.py`); the
replicas of a node bind the same port with SO_REUSEPORT, so the kernel spreads incoming connections
over them: one stable port per node, no proxy process in the path. Linux allows the shared bind only
between sockets of the same user that all set SO_REUSEPORT, so another user's process cannot take
over the port. No Ray here: a test or a script can run it around any `Hub`.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Executor
from typing import Optional

import uvicorn

from cnnsweep.serving.batcher import BatchingHub
from cnnsweep.serving.fast_app import build_fast_app
from cnnsweep.serving.model import ServedModel
from cnnsweep.serving.settings import ServeConfigError, ServeSettings

BACKLOG = 2048  # pending connections per socket (uvicorn's default)
KEEP_ALIVE_S = 5  # idle keep-alive connections close after this, seconds (uvicorn's default)


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

    def __init__(self, app, sock: socket.socket):
        self.sock = sock
        # proxy_headers off: no proxy sits in front of this port, and the middleware costs per request
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", proxy_headers=False,
                                backlog=BACKLOG, timeout_keep_alive=KEEP_ALIVE_S, server_header=False)
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
    return FastServer(build_fast_app(hub), sock).start()
