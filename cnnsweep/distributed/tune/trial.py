"""One trial: a Tune function that drives one Ray Train run (`TorchTrainer`). Every Ray touch is marked `# Ray:`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from cnnsweep.config import RunConfig, apply_overrides, validate_config
from cnnsweep.data import dataset_key


def trial_run_name(trial_id: str) -> str:
    """Deterministic per trial: a restored trial finds its Ray Train run (and checkpoints) again."""
    return f"trial_{trial_id}"


def trial_dirname(trial: Any) -> str:
    return trial_run_name(trial.trial_id)


class EpochReportCallback(TuneReportCallback):
    """TuneReportCallback plus `epochs_done` (1-based), the time axis ASHA and the live table use.

    `training_iteration` would restart at 1 when a resumed trial continues from epoch k, `epochs_done`
    does not.
    """

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = dict(metrics[0], epochs_done=int(metrics[0]["epoch"]) + 1)
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)  # Ray: forwards to Tune


@dataclass
class TrialContext:
    """What every trial shares, passed once through the object store with tune.with_parameters."""

    base: dict[str, Any]  # the base run config (without `search`)
    storage: str  # where Ray Train keeps each trial's checkpoints (local path or URI)
    dataset_key: tuple  # data.dataset_key of the dataset below
    dataset: list  # [ObjectRef of the ImageDataset]; in a list so Tune passes the reference, not the data
    metric: str  # search.metric: Ray Train keeps each trial's best checkpoints by it


def _dataset_ref(cfg: RunConfig, ctx: TrialContext) -> Any:
    if dataset_key(cfg.data) == ctx.dataset_key:
        return ctx.dataset[0]
    from cnnsweep.data import load_dataset  # this trial searched a field that changes the loaded data

    return ray.put(load_dataset(cfg.data))  # Ray: shared by this trial's workers


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune trial function: one candidate = one TorchTrainer run on the connected cluster."""
    from cnnsweep.distributed.train import build_trainer

    cfg = validate_config(apply_overrides(ctx.base, config["point"]["overrides"]))
    trial_id = tune.get_context().get_trial_id()  # Ray: stable across Tuner.restore
    trainer = build_trainer(cfg, _dataset_ref(cfg, ctx), storage_path=ctx.storage,
                            name=trial_run_name(trial_id), callbacks=[EpochReportCallback()],
                            metric=ctx.metric)
    trainer.fit()  # Ray: a rerun with the same name resumes from that run's latest checkpoint
