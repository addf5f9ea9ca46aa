"""Optuna sampler (and an ASHA-equivalent pruner) from a `search:` section. Pure optuna, no ray.

The Ray sweeps hand `build_sampler` to Ray Tune's OptunaSearch; benchmarks/sweep_efficiency.py uses
the same sampler with `build_pruner` (Optuna's asynchronous successive halving, the algorithm of Ray
Tune's ASHAScheduler with the same rungs), so the benchmark measures the defaults a sweep runs with.
"""

from __future__ import annotations

import warnings
from typing import Any

from cnnsweep.sweep.space import SearchConfig, default_startup_trials


def build_sampler(search: SearchConfig, seed: int | None = None) -> Any:
    """TPE (seeded; `search.multivariate`, `search.startup_trials`) or random search."""
    import optuna

    seed = search.seed if seed is None else seed
    if search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models parameters jointly (lr and optimizer interact) and, with
    # `when` branches, per group of parameters that occur together; constant_liar: concurrent
    # trials do not all sample the same promising point while earlier ones are still running.
    with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental" since Optuna 2.x
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=default_startup_trials(search),
                                          multivariate=search.multivariate, group=search.multivariate,
                                          constant_liar=True)


def build_pruner(search: SearchConfig) -> Any:
    """ASHA as an Optuna pruner: rungs at grace_period x reduction_factor^k epochs (steps = epochs done)."""
    import optuna

    if search.scheduler.name == "fifo":
        return optuna.pruners.NopPruner()
    s = search.scheduler
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=s.grace_period,
                                                   reduction_factor=int(s.reduction_factor))
