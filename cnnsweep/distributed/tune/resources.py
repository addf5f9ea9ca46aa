"""What one trial reserves, how many fit at once, and releasing what stopped trials left reserved."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import ray
from ray import tune

from cnnsweep.config import ConfigError, RunConfig, apply_overrides, config_to_dict, validate_config
from cnnsweep.distributed.tune.constants import TRIAL_DRIVER_RESOURCES
from cnnsweep.sweep.space import SearchConfig

log = logging.getLogger(__name__)


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


def release_orphaned_placement_groups() -> int:
    """Remove the placement groups of this job whose creating actor died; returns how many.

    When ASHA stops a trial, Tune ends the trial actor, and the Ray Train controller it owns dies with
    it before it can remove its workers' placement group. Ray keeps such a group until the whole job
    ends, so the next trial would wait for CPUs that nobody uses. Ray Train's own PlacementGroupCleaner
    covers this only when the Ray state API (the dashboard) answers for this cluster, which a private
    instance without dashboard, or a machine running several Ray instances, does not give it.

    Why a private accessor: no public API tells who created a placement group. The public
    `ray.util.placement_group_table()` (Ray 2.60) returns id, name, bundles, strategy, state and stats,
    but drops the GCS record's `creator_actor_id`, `creator_actor_dead` and `creator_job_id`;
    `ray.util.state.list_placement_groups()` has them only through the dashboard, which the private
    instance deliberately does not run (it executes code for whoever reaches it). So this reads the GCS
    table directly, and if a Ray upgrade moves those internals it degrades to doing nothing (a warning),
    never to a failed sweep.
    """
    try:
        from ray._private.state import state  # Ray: private accessor (see above)
        from ray.core.generated import gcs_pb2
        from ray.util.placement_group import PlacementGroup
    except ImportError as err:  # pragma: no cover - depends on the installed Ray
        log.warning("cannot release stopped trials' placement groups on this Ray version: %s", err)
        return 0

    job = ray.get_runtime_context().get_job_id()
    live = {gcs_pb2.PlacementGroupTableData.PENDING, gcs_pb2.PlacementGroupTableData.CREATED,
            gcs_pb2.PlacementGroupTableData.RESCHEDULING}
    removed = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        by_actor = pg.creator_actor_id.strip(b"\xff") != b""  # a driver-made group (Tune's) has a nil id
        if (by_actor and pg.creator_actor_dead and not pg.is_detached and pg.state in live
                and pg.creator_job_id.hex() == job):
            ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
            removed += 1
    return removed


class ReleaseStoppedTrials(tune.Callback):  # Ray: runs in this (the job's driver) process
    """After a trial ends, look for what its Train run left reserved, every few seconds for a while
    (the controller dies a moment after the trial actor; the GCS query costs ~0.1-0.5 s)."""

    def __init__(self, every_s: float = 2.0, watch_s: float = 60.0):
        self.every_s, self.watch_s = every_s, watch_s
        self._last, self._until = 0.0, 0.0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._until = time.monotonic() + self.watch_s

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._until = time.monotonic() + self.watch_s

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now > self._until or now - self._last < self.every_s:
            return
        self._last = now
        removed = release_orphaned_placement_groups()
        if removed:
            log.info("released %d placement group(s) of stopped trials", removed)
