"""`cnnsweep serve`: start Ray Serve on this machine (or a cluster) and block until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Optional

import ray
from ray import serve

from cnnsweep.distributed.serve.deployment import APP_NAME, build_app
from cnnsweep.distributed.serve.ray_internals import GRPC_HOST_ENV
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ServeConfigError, ServeSettings

# Ray reads this in each proxy process (inherited from the driver when ray.init starts a local
# instance); on a cluster, set it in the nodes' environment (serve/rayservice.yaml does).
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "cnnsweep.distributed.serve.proxy_setup:proxy_middlewares"
# Largest gRPC message Serve's gRPC servers accept, bytes (Ray's default is 2 GiB): read by each Serve
# process at import, so it goes in the environment before ray.init, like the one above.
GRPC_MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
GRPC_ENVELOPE_BYTES = 64 * 1024  # protobuf framing, names, shapes, parameters around the tensor bytes
# The KServe/Triton gRPC service (inference.GRPCInferenceService), from tritonclient[grpc].
GRPC_SERVICER = "tritonclient.grpc.service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"


def check_models(settings: ServeSettings) -> dict[str, str]:
    """Load each model once in the driver, so a bad file fails here with a clear message, not in a replica."""
    return {m.served_name: load_served_model(m, num_threads=1, device="cpu").info.precision for m in settings.models}


def check_grpc_available() -> None:
    try:
        import tritonclient.grpc.service_pb2_grpc  # noqa: F401
    except ImportError:
        raise ServeConfigError("--grpc-port needs tritonclient[grpc] (the KServe/Triton gRPC service): "
                               "pip install 'cnnsweep[grpc]'") from None


def _grpc_environment(settings: ServeSettings, host: str) -> None:
    """gRPC on `host` only, messages up to the body limit: set before Ray starts its processes."""
    os.environ[GRPC_HOST_ENV] = host
    os.environ[GRPC_MAX_MESSAGE_ENV] = str(settings.max_body_bytes + GRPC_ENVELOPE_BYTES)


def http_options(settings: ServeSettings, host: str, port: int) -> dict:
    """Serve's HTTP proxy: bound to `host` (127.0.0.1 unless told otherwise: the API has no auth), the
    whole request bounded by `settings.request_timeout_s` (then 408; a stuck replica or a client that
    never finishes cannot hold a slot longer; the per-read deadline, read_timeout_s, is shorter)."""
    return {"host": host, "port": port, "request_timeout_s": settings.request_timeout_s}


def grpc_options(settings: ServeSettings, grpc_port: Optional[int]) -> Optional[dict]:
    """Serve's gRPC ingress with the KServe/Triton service and the same whole-request deadline as HTTP
    (then DEADLINE_EXCEEDED), or None (no gRPC server at all)."""
    if grpc_port is None:
        return None
    return {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER],
            "request_timeout_s": settings.request_timeout_s}


def _start_ray(address: Optional[str]) -> None:
    from cnnsweep.distributed.cluster import start_ray

    # The proxy's own 503/408/404 answers become {"error": ...} JSON (Ray 2.60 removed
    # http_options.middlewares; this callback is the remaining way into the proxy).
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    start_ray(address)


def start_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
                 address: Optional[str] = None, route_prefix: str = "/", app_name: str = APP_NAME,
                 check: bool = True, grpc_port: Optional[int] = None) -> str:
    """Deploy the models and return the base URL (non-blocking). `grpc_port` also serves the
    KServe/Triton gRPC protocol there (on `host`)."""
    if check and address is None:  # on a remote cluster the paths are the replicas' business, not this machine's
        check_models(settings)
    if grpc_port is not None:
        check_grpc_available()
        _grpc_environment(settings, host)
    _start_ray(address)
    serve.start(http_options=http_options(settings, host, port), grpc_options=grpc_options(settings, grpc_port))  # Ray
    serve.run(build_app(settings), name=app_name, route_prefix=route_prefix, blocking=False)  # Ray
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def _on_signals(stop: threading.Event, serving: threading.Event) -> None:
    """SIGTERM and SIGINT: while starting, interrupt (KeyboardInterrupt); once serving, set `stop`.
    Installed after ray.init, whose own (C++) SIGTERM handler aborts the process (SIGABRT, rc -6)."""
    def handle(signum, frame):
        first = not stop.is_set()
        stop.set()
        if first and not serving.is_set():
            raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)


def serve_forever(settings: ServeSettings, on_ready: Callable[[str], None] = print,
                  address: Optional[str] = None, **kwargs) -> None:
    """start_server, then block until Ctrl-C or SIGTERM; shuts Serve and Ray down on the way out."""
    from cnnsweep.distributed.cluster import stop_ray

    stop, serving = threading.Event(), threading.Event()
    try:
        if address is None:
            check_models(settings)  # a bad file: a clear error before Ray starts
        if kwargs.get("grpc_port") is not None:  # before Ray starts: its processes read the environment
            check_grpc_available()
            _grpc_environment(settings, kwargs.get("host", "127.0.0.1"))
        _start_ray(address)
        _on_signals(stop, serving)
        url = start_server(settings, address=address, check=False, **kwargs)
        serving.set()
        on_ready(url)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:  # a signal while still starting
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the teardown
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if ray.is_initialized():  # not when a bad model file stopped us before Ray started
            serve.shutdown()  # Ray
        stop_ray()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
