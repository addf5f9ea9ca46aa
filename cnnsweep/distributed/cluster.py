"""Connecting to Ray: a local instance on this machine, or the cluster at --address / RAY_ADDRESS.

The private local instance runs its dashboard on 127.0.0.1 (behind Ray's token auth, which Ray turns on
for every cluster it starts) because Ray Train's own `PlacementGroupCleaner` asks the state API whether
a run's controller still lives, and removes the run's placement group when it does not. Without a state
API of its own, that question went to whichever Ray cluster on the machine was started last: with no
other cluster the cleaner never decided (stopped trials' groups stayed reserved, one cleaner actor per
trial stayed alive), and with another one it decided "dead" for a live run and killed its workers.
`RAY_API_SERVER_ADDRESS` pins every state API call of this instance's processes to its own dashboard.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Optional

import ray

# Ray's state API client reads this before RAY_ADDRESS or the machine's newest cluster; the raylet and
# every worker it starts inherit it from this (the driver's) environment.
STATE_API_ENV = "RAY_API_SERVER_ADDRESS"
LOOPBACK = "127.0.0.1"
_owned = {"env": None}  # the state API address this process set, while its private instance runs


def start_ray(address: Optional[str] = None, *, num_cpus: Optional[int] = None, quiet: bool = True) -> dict:
    """ray.init once per process; returns the cluster's resources.

    Without an address (and no RAY_ADDRESS) this starts a private local instance with its dashboard
    on 127.0.0.1 only; the cluster at `address` is used as it is (its own dashboard serves the state API).
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = dict(address=address, logging_level=logging.WARNING if quiet else logging.INFO,
                        log_to_driver=not quiet, ignore_reinit_error=True)
    if address is None:  # "local": a new instance, never a `ray start` cluster found via /tmp/ray
        kwargs.update(_private_instance_options(num_cpus))
    ray.init(**kwargs)  # Ray
    if address is None:
        restrict_token_file()
    return ray.cluster_resources()


# Where Ray keeps the token it generates for the clusters it starts (Ray 2.60); it writes it readable by
# every local user, who could then call this user's clusters.
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def restrict_token_file(path: Path = TOKEN_FILE) -> None:
    """Make Ray's token file readable by its owner only (the processes that need it run as that user)."""
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_uid == os.getuid():
            path.chmod(path.stat().st_mode & 0o700)
    except OSError:  # a read-only home: the token stays as Ray wrote it
        pass


def _private_instance_options(num_cpus: Optional[int]) -> dict:
    port = free_loopback_port()
    url = f"http://{LOOPBACK}:{port}"
    os.environ[STATE_API_ENV] = url  # before ray.init: the processes it starts copy this environment
    _owned["env"] = url
    return dict(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK,
                include_dashboard=True, dashboard_host=LOOPBACK, dashboard_port=port)


def free_loopback_port() -> int:
    """A port nothing listens on now (Ray's default 8265 may belong to another instance here)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def is_private_instance() -> bool:
    """Whether this process started the Ray instance it is connected to (so everything in it is ours)."""
    return ray.is_initialized() and _owned["env"] is not None


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()  # Ray
    if _owned["env"] is not None and os.environ.get(STATE_API_ENV) == _owned["env"]:
        del os.environ[STATE_API_ENV]
    _owned["env"] = None
