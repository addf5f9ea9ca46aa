"""Search algorithm (Optuna TPE / random, grid) and scheduler (ASHA, FIFO) from `search:`. Ray touches: `# Ray:`."""

from __future__ import annotations

from functools import partial
from typing import Any

from ray import tune

from cnnsweep.config import RunConfig, get_dotted
from cnnsweep.sweep.samplers import build_sampler
from cnnsweep.sweep.space import SearchConfig, baseline_params, expand_grid, sample_overrides


def sample_point(search: SearchConfig, base_values: dict[str, Any], trial: Any) -> dict[str, Any]:
    """Optuna define-by-run space; the returned constants become the trial config's `point`."""
    overrides = sample_overrides(search, trial)
    same = all(base_values.get(k) == v and type(base_values.get(k)) is type(v) for k, v in overrides.items())
    return {"point": {"label": "baseline" if same else "", "overrides": overrides}}


def build_search_alg(search: SearchConfig, base: dict[str, Any],
                     max_concurrent: int) -> tuple[Any, dict[str, Any]]:
    """(Tune search algorithm, param_space): OptunaSearch (TPE or random) or a grid."""
    if search.algorithm == "grid":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        points = [p.model_dump() for p in expand_grid(search)]
        # Ray: TuneConfig.max_concurrent_trials only limits a `Searcher`; this generator limits itself
        return BasicVariantGenerator(max_concurrent=max_concurrent), {"point": tune.grid_search(points)}
    from ray.tune.search.optuna import OptunaSearch

    sampler = build_sampler(search)  # the same sampler benchmarks/sweep_efficiency.py measures
    # Ray: Optuna gets every intermediate result (on_trial_result) and each trial's final value
    warm = [baseline_params(search, base)] if search.baseline_first else None
    base_values = {p: get_dotted(base, p) for p in search.space}
    return OptunaSearch(space=partial(sample_point, search, base_values), metric=search.metric, mode=search.mode,
                        sampler=sampler, points_to_evaluate=warm), {}


def max_epochs(cfg: RunConfig, search: SearchConfig) -> int:
    """The longest trial, in epochs (ASHA's max_t), over every value `train.epochs` can take."""
    values = [cfg.train.epochs]
    if "train.epochs" in search.space:
        d = search.space["train.epochs"]
        values += [v for v in d.options if isinstance(v, int)] if d.kind == "choice" else [int(d.high)]
    values += [v["train.epochs"] for v in (search.ablation or {}).values() if "train.epochs" in v]
    return max(values)


def build_trial_scheduler(search: SearchConfig, epochs: int) -> Any:
    if search.scheduler.name == "fifo":
        return tune.schedulers.FIFOScheduler()  # Ray
    s = search.scheduler
    return tune.schedulers.ASHAScheduler(  # Ray: rungs at grace_period x reduction_factor^k epochs
        time_attr="epochs_done", metric=search.metric, mode=search.mode, max_t=epochs,
        grace_period=s.grace_period, reduction_factor=s.reduction_factor)
