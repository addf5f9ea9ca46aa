"""Every use of Ray's private modules in cnnsweep, in one place (Ray 2.60; `ray<2.61` in pyproject.toml).

Ray Serve has no public API for this need. A Ray upgrade that moves it fails here, in
`tests/distributed/serve/test_ray_internals.py`, and nowhere else.

`bind_grpc_to_host`: Ray 2.60 listens for gRPC on `[::]:<port>`, every interface, with no option to
change it (gRPCOptions has no host), while the API has no authentication. `cnnsweep serve` puts its
`--host` (127.0.0.1 by default) in CNNSWEEP_GRPC_HOST before Ray starts; every Serve process inherits
it, and this wraps the one function Ray binds its gRPC servers through
(`ray.serve._private.default_impl.add_grpc_address`), so they listen on that host instead. Without the
variable (a cluster started by hand, KubeRay) nothing changes.
"""

from __future__ import annotations

import os

GRPC_HOST_ENV = "CNNSWEEP_GRPC_HOST"


def grpc_address(host: str, address: str) -> str:
    """"[::]:9000" -> "127.0.0.1:9000" (IPv6 hosts in brackets)."""
    port = address.rsplit(":", 1)[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_grpc_to_host() -> None:
    """Idempotent; call in a Serve process before its gRPC server starts (proxy callback, replica init)."""
    host = os.environ.get(GRPC_HOST_ENV)
    if not host:
        return
    # start_grpc_server imports add_grpc_address from this module at each call, so replacing the
    # attribute is enough (tests/serving/test_grpc_server.py checks what listens).
    from ray.serve._private import default_impl

    original = default_impl.add_grpc_address
    if getattr(original, "cnnsweep_host", None) == host:
        return

    def add_grpc_address(server, address: str):
        return original(server, grpc_address(host, address))

    add_grpc_address.cnnsweep_host = host
    default_impl.add_grpc_address = add_grpc_address
