"""Connecting to Ray: a local instance on this machine, or the cluster at --address / RAY_ADDRESS."""

from __future__ import annotations

import logging
import os
from typing import Optional

import ray


def start_ray(address: Optional[str] = None, *, num_cpus: Optional[int] = None, quiet: bool = True) -> dict:
    """ray.init once per process; returns the cluster's resources.

    Without an address (and no RAY_ADDRESS) this starts a private local instance bound to 127.0.0.1
    with no dashboard: the dashboard and job API run code for anyone who can reach them.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = dict(address=address, logging_level=logging.WARNING if quiet else logging.INFO,
                        log_to_driver=not quiet, ignore_reinit_error=True)
    if address is None:  # "local": a new instance, never a `ray start` cluster found via /tmp/ray
        kwargs.update(address="local", include_dashboard=False, num_cpus=num_cpus, _node_ip_address="127.0.0.1")
    ray.init(**kwargs)  # Ray
    return ray.cluster_resources()


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()  # Ray
