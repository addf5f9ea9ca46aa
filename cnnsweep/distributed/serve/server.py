"""`cnnsweep serve`: start Ray Serve on this machine (or a cluster) and block until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable, Optional

import ray
from ray import serve

from cnnsweep.distributed.serve.deployment import APP_NAME, build_app
from cnnsweep.distributed.serve.ray_internals import GRPC_HOST_ENV, replica_target_ports
from cnnsweep.serving.fast_server import check_port_free
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ServeConfigError, ServeSettings

# The whole request, proxy to answer, seconds (then 408): a stuck replica or a client that never
# finishes cannot hold a slot longer; the per-read deadline (ServeSettings.read_timeout_s) is shorter.
REQUEST_TIMEOUT_S = 30.0
# Ray reads this in each proxy process (inherited from the driver when ray.init starts a local
# instance); on a cluster, set it in the nodes' environment (serve/rayservice.yaml does).
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "cnnsweep.distributed.serve.proxy_setup:proxy_middlewares"
# Ray 2.60: each ingress replica runs its own HTTP server (no proxy hop) on a port from
# RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT (30000-31000); the proxy on `port` stays up on the head.
# Read by the controller and replicas, so it must be in the environment before ray.init.
DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
# Ray holds an ingress replica draining at least this long (default 30 s, for load balancers to
# notice) before it stops; a local instance has no balancer, and 30 s would delay every shutdown.
DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
LOCAL_DRAIN_S = "1"
# Largest gRPC message Serve's gRPC servers accept, bytes (Ray's default is 2 GiB): read by each Serve
# process at import, so it goes in the environment before ray.init, like the two above.
GRPC_MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
GRPC_ENVELOPE_BYTES = 64 * 1024  # protobuf framing, names, shapes, parameters around the tensor bytes
# The KServe/Triton gRPC service (inference.GRPCInferenceService), from tritonclient[grpc].
GRPC_SERVICER = "tritonclient.grpc.service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"


def check_models(settings: ServeSettings) -> dict[str, str]:
    """Load each model once in the driver, so a bad file fails here with a clear message, not in a replica."""
    return {m.served_name: load_served_model(m, num_threads=1, device="cpu").info.precision for m in settings.models}


def check_local(settings: ServeSettings) -> None:
    """What can be checked on this machine before any replica starts: model files, the fast front's port."""
    check_models(settings)
    if settings.fast_port is not None:  # a port held by another program: say so now
        check_port_free(settings.fast_host, settings.fast_port)


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


def grpc_options(grpc_port: Optional[int], request_timeout_s: float) -> Optional[dict]:
    """Serve's gRPC ingress with the KServe/Triton service, or None (no gRPC server at all)."""
    if grpc_port is None:
        return None
    return {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER], "request_timeout_s": request_timeout_s}


def _start_ray(address: Optional[str], direct_ingress: bool = False) -> None:
    from cnnsweep.distributed.cluster import start_ray

    if direct_ingress:  # on a cluster, the nodes' environment decides (as for the proxy callback)
        os.environ[DIRECT_INGRESS_ENV] = "1"
        if address is None:
            os.environ.setdefault(DRAIN_ENV, LOCAL_DRAIN_S)
    # The proxy's own 503/408/404 answers become {"error": ...} JSON (Ray 2.60 removed
    # http_options.middlewares; this callback is the remaining way into the proxy).
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    start_ray(address)


def start_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
                 address: Optional[str] = None, route_prefix: str = "/", app_name: str = APP_NAME,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, check: bool = True,
                 direct_ingress: bool = False, grpc_port: Optional[int] = None) -> str:
    """Deploy the models and return the base URL (non-blocking); with `direct_ingress`, the first
    replica's own URL (all of them: `replica_urls`). `grpc_port` also serves the KServe/Triton gRPC
    protocol there (on `host`; with direct ingress, on each replica's port too: `replica_urls(...,
    protocol="gRPC")`)."""
    if check and address is None:  # on a remote cluster the paths are the replicas' business, not this machine's
        check_local(settings)
    if grpc_port is not None:
        check_grpc_available()
        _grpc_environment(settings, host)
    _start_ray(address, direct_ingress)
    # Ray: the HTTP (and gRPC) proxy binds here (127.0.0.1 unless told otherwise: the API has no auth).
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": request_timeout_s},
                grpc_options=grpc_options(grpc_port, request_timeout_s))
    serve.run(build_app(settings), name=app_name, route_prefix=route_prefix, blocking=False)  # Ray
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if direct_ingress:
        return replica_urls(port, app_name, shown)[0]
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def replica_urls(proxy_port: int, app_name: str = APP_NAME, host: str = "127.0.0.1",
                 wait_s: float = 30.0, protocol: str = "HTTP") -> list[str]:
    """Direct ingress: the URL each running replica of `app_name` serves on (one per replica):
    http://host:port/prefix, or host:port with `protocol="gRPC"` (`proxy_port`: that protocol's proxy).
    Waits up to `wait_s` seconds: the controller records the replicas' ports a tick after they start."""
    deadline = time.monotonic() + wait_s
    while True:
        # Until the replicas' ports are known, the target is the proxy (`proxy_port`).
        urls = [_target_url(protocol, host, port, prefix) for port, prefix in replica_target_ports(app_name, protocol)
                if port != proxy_port]
        if urls or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not urls:
        raise RuntimeError(f"direct ingress: no replica of {app_name!r} is listening for {protocol} after {wait_s:.0f} s")
    return urls


def _target_url(protocol: str, host: str, port: int, route_prefix: str) -> str:
    return f"http://{host}:{port}{route_prefix.rstrip('/')}" if protocol == "HTTP" else f"{host}:{port}"


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
                  address: Optional[str] = None, direct_ingress: bool = False, **kwargs) -> None:
    """start_server, then block until Ctrl-C or SIGTERM; shuts Serve and Ray down on the way out."""
    from cnnsweep.distributed.cluster import stop_ray

    stop, serving = threading.Event(), threading.Event()
    try:
        if address is None:
            check_local(settings)  # a bad file or a taken port: a clear error before Ray starts
        if kwargs.get("grpc_port") is not None:  # before Ray starts: its processes read the environment
            check_grpc_available()
            _grpc_environment(settings, kwargs.get("host", "127.0.0.1"))
        _start_ray(address, direct_ingress)
        _on_signals(stop, serving)
        url = start_server(settings, address=address, check=False, direct_ingress=direct_ingress, **kwargs)
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
