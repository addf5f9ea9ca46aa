"""The Tuner: a truncated or garbled tuner.pkl is a clear error on --resume; failed trials are retried."""

from __future__ import annotations

import pytest

from cnnsweep.config import ConfigError, validate_config
from cnnsweep.sweep.space import load_search

SWEEP = {"name": "tiny", "data": {"name": "digits"}, "train": {"epochs": 1},
         "search": {"algorithm": "grid", "space": {"model.width": {"choice": [4, 8]}}}}


def _noop_trial(config):
    pass


@pytest.fixture
def plan_and_trainable(tmp_path):
    """A real Tuner's state in tmp_path/tune/tuner.pkl (Tuner() writes it; no Ray instance needed)."""
    from ray import tune

    from cnnsweep.distributed.tune.tuner import SweepPlan, build_tuner

    cfg = validate_config(SWEEP)
    plan = SweepPlan(cfg, load_search(cfg), str(tmp_path), 1)
    trainable = tune.with_resources(_noop_trial, {"CPU": 0, "memory": 1})
    tuner = build_tuner(plan, trainable)
    return plan, trainable, tuner


@pytest.mark.slow
def test_truncated_or_garbled_tuner_state_is_a_config_error(plan_and_trainable, tmp_path):
    from cnnsweep.distributed.tune.tuner import restore_tuner

    plan, trainable, _ = plan_and_trainable
    state = tmp_path / "tune" / "tuner.pkl"
    good = state.read_bytes()
    restore_tuner(plan, trainable)  # the intact state restores
    for bad in (b"", good[: len(good) // 2], good[:-1], b"\x80\x05garbage" * 10):
        state.write_bytes(bad)
        with pytest.raises(ConfigError, match=r"--resume: cannot read the sweep state .*tuner\.pkl .*truncated or "
                                              r"corrupt"):
            restore_tuner(plan, trainable)


@pytest.mark.slow
def test_failed_trials_and_train_runs_are_retried_by_default(plan_and_trainable, tmp_path):
    from cnnsweep.distributed.train import build_trainer
    from cnnsweep.distributed.tune.constants import TRIAL_MAX_FAILURES

    _, _, tuner = plan_and_trainable
    assert TRIAL_MAX_FAILURES >= 1
    assert tuner._local_tuner.get_run_config().failure_config.max_failures == TRIAL_MAX_FAILURES
    cfg = validate_config({})
    assert cfg.scaling.max_failures == 2
    trainer = build_trainer(cfg, None, storage_path=str(tmp_path), name="t")
    assert trainer.run_config.failure_config.max_failures == 2
