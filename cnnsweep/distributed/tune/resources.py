"""What one trial reserves, how many fit at once, and waiting until a sweep's reservations are released."""

from __future__ import annotations

import math
import time
from typing import Any

import ray

from cnnsweep.config import ConfigError, RunConfig, apply_overrides, config_to_dict, validate_config
from cnnsweep.distributed.tune.constants import TRIAL_DRIVER_RESOURCES
from cnnsweep.sweep.space import SearchConfig


def trial_footprint(cfg: RunConfig, search: SearchConfig) -> dict[str, float]:
    """CPUs/GPUs one trial's TorchTrainer reserves (workers x per worker), worst case over the space."""
    variants = [{}] + [dict(v) for v in (search.ablation or {}).values()]
    for path, dist in search.space.items():
        if path.startswith("scaling."):
            values = dist.options if dist.kind == "choice" else [dist.low, dist.high]
            variants += [{path: v} for v in values if not hasattr(v, "kind")]
    need = {"CPU": 0.0, "GPU": 0.0}
    base = config_to_dict(cfg)
    for v in variants:
        try:
            s = validate_config(apply_overrides(base, v)).scaling
        except ConfigError:
            continue  # reported when that trial runs
        need["CPU"] = max(need["CPU"], s.num_workers * s.cpus_per_worker + TRIAL_DRIVER_RESOURCES["CPU"])
        need["GPU"] = max(need["GPU"], s.num_workers * s.gpus_per_worker if s.use_gpu else 0.0)
    return need


def derive_max_concurrent(requested: Any, cluster: dict[str, float], need: dict[str, float],
                          num_trials: int) -> int:
    """`auto`: as many trials as the cluster's CPUs and GPUs hold at once, so none waits forever."""
    if requested != "auto":
        return int(requested)
    fits = [math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0]
    n = min(fits) if fits else num_trials
    if n < 1:
        have = {k: cluster.get(k, 0.0) for k in need}
        raise ConfigError(f"one trial needs {need} (scaling.num_workers x per-worker resources) but the "
                          f"cluster has {have}: lower scaling.*, or set search.max_concurrent when an "
                          "autoscaler will add nodes")
    return max(1, min(n, num_trials))


# Ray Train's PlacementGroupCleaner looks at its controller every 1 s and removes a dead run's group
# (cnnsweep.distributed.cluster gives it the state API it needs); this bounds how long the end of a
# sweep waits for that before saying so, seconds.
RELEASE_DEADLINE_S = 60.0
_HELD = ("PENDING", "CREATED", "RESCHEDULING")


def held_placement_groups() -> set[str]:
    """Ids (hex) of the cluster's placement groups that still reserve, or wait for, resources."""
    return {pg_id for pg_id, pg in ray.util.placement_group_table().items()  # Ray: public table
            if pg.get("state") in _HELD}


def wait_until_released(held_before: set[str], deadline_s: float = RELEASE_DEADLINE_S,
                        poll_s: float = 0.5) -> set[str]:
    """Wait until the placement groups made since `held_before` was taken are all removed; returns the
    ones still held at the deadline (empty when everything this sweep reserved is free again).

    When Tune's loop ends, the last trials' Train controllers may have died a moment ago (ASHA stopped
    them, or they errored): their workers' groups are released by Ray's cleaner a second or two later.
    Work that needs the cluster's CPUs (the end-of-sweep analysis) starts only after that.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        left = held_placement_groups() - held_before
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(poll_s)


def remove_placement_groups(ids: set[str]) -> None:
    """Remove groups by id (hex): only for an instance this process owns, where every group is ours."""
    from ray.util.placement_group import PlacementGroup

    for pg_id in ids:
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))  # Ray
