"""`cnnsweep serve`: start Ray Serve on this machine (or a cluster) and block until Ctrl-C."""

from __future__ import annotations

import time
from typing import Callable, Optional

from ray import serve

from cnnsweep.distributed.serve.deployment import APP_NAME, build_app
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ServeSettings


def check_models(settings: ServeSettings) -> dict[str, str]:
    """Load each model once in the driver, so a bad file fails here with a clear message, not in a replica."""
    return {m.served_name: load_served_model(m, num_threads=1, device="cpu").info.precision for m in settings.models}


def start_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
                 address: Optional[str] = None, route_prefix: str = "/", app_name: str = APP_NAME) -> str:
    """Deploy the models and return the base URL (non-blocking)."""
    from cnnsweep.distributed.cluster import start_ray

    if address is None:  # on a remote cluster the paths are the replicas' business, not this machine's
        check_models(settings)
    start_ray(address)
    # Ray: the HTTP proxy binds here (127.0.0.1 unless told otherwise: the API has no auth).
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(settings), name=app_name, route_prefix=route_prefix, blocking=False)  # Ray
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def serve_forever(settings: ServeSettings, on_ready: Callable[[str], None] = print, **kwargs) -> None:
    """start_server, then block until Ctrl-C; shuts Serve down on the way out."""
    url = start_server(settings, **kwargs)
    on_ready(url)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()  # Ray
