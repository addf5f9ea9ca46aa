"""One trial: a Tune function that drives one Ray Train run (`TorchTrainer`). Every Ray touch is marked `# Ray:`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.train import Result
from ray.tune.integration.ray_train import TuneReportCallback

from cnnsweep import metrics as M
from cnnsweep.checkpoint import load_checkpoint
from cnnsweep.config import RunConfig, apply_overrides, validate_config
from cnnsweep.data import dataset_key
from cnnsweep.distributed.tune.storage import join_path


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
        first = dict(metrics[0], epochs_done=int(metrics[0][M.EPOCH]) + 1)
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)  # Ray: forwards to Tune


def _prior_rows(run_path: str) -> list[dict[str, Any]]:
    """The epochs an earlier attempt of this trial's Train run already finished, from its latest checkpoint
    (whose state carries the whole history), each with its checkpoint's path where Train kept one.
    [] when the run has no checkpoint yet."""
    try:
        prior = Result.from_path(run_path)  # Ray: reads the run's checkpoint index (public API)
    except RuntimeError:  # no such run, or it never registered a checkpoint
        return []
    if prior.checkpoint is None:
        return []
    with prior.checkpoint.as_directory() as d:  # Ray: a local path, or a download from URI storage
        history = load_checkpoint(d).history
    paths = {int(m[M.EPOCH]): c.path for c, m in prior.best_checkpoints or [] if M.EPOCH in m}
    paths[int(prior.metrics[M.EPOCH])] = prior.checkpoint.path
    rows = []
    for row in history:
        epoch = int(row[M.EPOCH])
        rows.append(dict(row, **{M.EPOCHS_DONE: epoch + 1}))
        if epoch in paths:
            rows[-1][M.CHECKPOINT_PATH] = paths[epoch]
    return rows


def replay_prior_epochs(run_path: str) -> int:
    """Report to Tune, again, the epochs a restored trial's Train run had already finished; returns how many.

    Tune restarts an interrupted trial with an empty result history (it rewrites the trial's
    result.json), and the Train run then reports only the epochs after its checkpoint, or none at all
    when it had already finished them all before the interruption reached it: without this, such a
    trial would look stopped early, its best epoch and checkpoint lost to the leaderboard and `best/`.
    """
    rows = _prior_rows(run_path)
    for row in rows:
        tune.report(row)  # Ray: the scheduler sees these too; rungs it already recorded are not recounted
    return len(rows)


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
    replay_prior_epochs(join_path(ctx.storage, trial_run_name(trial_id)))
    trainer = build_trainer(cfg, _dataset_ref(cfg, ctx), storage_path=ctx.storage,
                            name=trial_run_name(trial_id), callbacks=[EpochReportCallback()],
                            metric=ctx.metric)
    trainer.fit()  # Ray: a rerun with the same name resumes from that run's latest checkpoint
