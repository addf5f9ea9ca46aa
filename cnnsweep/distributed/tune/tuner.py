"""Building (or restoring) the `tune.Tuner` for a sweep plan. Ray touches: `# Ray:`."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.logger import TBXLoggerCallback

from cnnsweep.config import ConfigError, RunConfig, config_to_dict
from cnnsweep.data import dataset_key
from cnnsweep.distributed.tune.constants import (EXPERIMENT, SYNC_PERIOD_LOCAL_S, SYNC_PERIOD_URI_S, TRAIN_RUNS,
                                                 TRIAL_DRIVER_RESOURCES, TRIAL_MAX_FAILURES)
from cnnsweep.distributed.tune.progress import SweepProgress
from cnnsweep.distributed.tune.search import build_trial_scheduler, build_search_alg, max_epochs
from cnnsweep.distributed.tune.storage import absolute_data_root, join_path, is_uri
from cnnsweep.distributed.tune.trial import TrialContext, run_trial, trial_dirname
from cnnsweep.sweep.space import SearchConfig

TUNER_STATE = "tuner.pkl"  # Tune's pickled experiment state (Tuner.__init__ writes it, not atomically)
# What unpickling a cut-short, garbled or foreign tuner.pkl raises (measured: an empty file -> EOFError,
# a truncated one -> UnpicklingError; a pickle from another Ray/cnnsweep version names classes or
# fields that are gone -> AttributeError/ImportError/TypeError); Tune's own checks raise ValueError.
UNREADABLE_STATE = (EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, KeyError,
                    TypeError, ValueError)


@dataclass
class SweepPlan:
    """Everything decided before Ray runs a trial (also what --resume must rebuild identically)."""

    cfg: RunConfig
    search: SearchConfig
    output: str  # absolute path or URI
    max_concurrent: int

    @property
    def experiment(self) -> str:
        return join_path(self.output, EXPERIMENT)


def build_trainable(plan: SweepPlan, dataset: Any) -> Any:
    base = absolute_data_root(config_to_dict(plan.cfg))
    ctx = TrialContext(base=base, storage=join_path(plan.output, TRAIN_RUNS), dataset_key=dataset_key(plan.cfg.data),
                       dataset=[ray.put(dataset)],  # Ray: one copy in the object store for every trial
                       metric=plan.search.metric)
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), TRIAL_DRIVER_RESOURCES)  # Ray


def build_tuner(plan: SweepPlan, trainable: Any) -> tune.Tuner:
    search_alg, param_space = build_search_alg(plan.search, config_to_dict(plan.cfg), plan.max_concurrent)
    tune_config = tune.TuneConfig(  # Ray
        search_alg=search_alg, scheduler=build_trial_scheduler(plan.search, max_epochs(plan.cfg, plan.search)),
        num_samples=1 if plan.search.algorithm == "grid" else plan.search.num_samples,
        max_concurrent_trials=None if plan.search.algorithm == "grid" else plan.max_concurrent,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_dirname)
    run_config = tune.RunConfig(  # Ray: results and TensorBoard logs under <output>/tune
        name=EXPERIMENT, storage_path=plan.output, verbose=0,
        # the experiment state --resume needs reaches storage every few seconds (Ray's default: 5 min)
        sync_config=tune.SyncConfig(sync_period=SYNC_PERIOD_URI_S if is_uri(plan.output) else SYNC_PERIOD_LOCAL_S),
        callbacks=[SweepProgress(plan.search.metric, plan.search.mode), TBXLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=TRIAL_MAX_FAILURES))
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def restore_tuner(plan: SweepPlan, trainable: Any) -> tune.Tuner:
    """--resume: finished trials are kept, unfinished ones continue from their checkpoints, errored rerun."""
    if not tune.Tuner.can_restore(plan.experiment):  # Ray
        raise ConfigError(f"--resume: no sweep to continue in {plan.output} (no {EXPERIMENT}/ experiment "
                          "state there); run without --resume to start one")
    _, param_space = build_search_alg(plan.search, config_to_dict(plan.cfg), plan.max_concurrent)
    try:
        # Ray: unpickles <output>/tune/tuner.pkl. Loading a pickle can run any code it names, which is
        # why docs/sweeps.md says to resume only from a folder you trust (one your own sweep wrote).
        return tune.Tuner.restore(plan.experiment, trainable=trainable, param_space=param_space or None,
                                  resume_unfinished=True, restart_errored=True)
    except UNREADABLE_STATE as err:
        raise ConfigError(f"--resume: cannot read the sweep state {join_path(plan.experiment, TUNER_STATE)} "
                          f"({type(err).__name__}: {err}); it is truncated or corrupt, or was written by another "
                          "Ray version: start afresh in another --output") from None
