"""What Ray Serve runs in each proxy at start-up, through
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH: JSON error bodies for the proxy's own HTTP answers, the gRPC
server bound to `cnnsweep serve --host` (Ray calls this before it starts its gRPC server), and the
KServe/Triton messages made picklable (the gRPC proxy pickles each request for the replica)."""

from __future__ import annotations

from cnnsweep.distributed.serve.ray_internals import bind_grpc_to_host
from cnnsweep.serving.proxy_errors import proxy_middlewares as json_error_middlewares


def register_grpc_messages() -> None:
    """Import the picklable KServe/Triton messages if tritonclient[grpc] is installed (gRPC is optional)."""
    try:
        import cnnsweep.serving.grpc_messages  # noqa: F401
    except ImportError:
        pass


def proxy_middlewares() -> list:
    bind_grpc_to_host()  # Ray: runs in the proxy process, before its gRPC server task starts
    register_grpc_messages()
    return json_error_middlewares()
