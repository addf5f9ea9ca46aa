"""The private Ray APIs cnnsweep relies on (cnnsweep.distributed.serve.ray_internals) are still there and
still behave as used: a Ray upgrade that moves them fails here first."""

from __future__ import annotations

import inspect

import pytest

from cnnsweep.distributed.serve import ray_internals


def test_the_grpc_bind_wrapper_replaces_the_function_ray_binds_through(monkeypatch):
    from ray.serve._private import default_impl, grpc_util

    assert "add_grpc_address" in inspect.getsource(grpc_util)  # where Serve's gRPC servers are bound
    calls = []
    monkeypatch.setattr(default_impl, "add_grpc_address", lambda server, address: calls.append(address))
    monkeypatch.setenv(ray_internals.GRPC_HOST_ENV, "127.0.0.1")
    ray_internals.bind_grpc_to_host()
    ray_internals.bind_grpc_to_host()  # idempotent: wrapped once
    default_impl.add_grpc_address(None, "[::]:9000")
    assert calls == ["127.0.0.1:9000"]


@pytest.mark.parametrize("host, expected", [("127.0.0.1", "127.0.0.1:9000"), ("::1", "[::1]:9000")])
def test_grpc_address_keeps_the_port(host, expected):
    assert ray_internals.grpc_address(host, "[::]:9000") == expected
