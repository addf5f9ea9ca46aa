"""`cnnsweep tune -o X` output checks: one sweep per folder (lock), a used folder needs --resume, and
--resume refuses a config that differs from the saved sweep.yaml. No Ray is started: `start_ray` reports
a fake 2-CPU cluster and `build_trainable` (the first Ray call after the checks) is a sentinel."""

from __future__ import annotations


import pytest

from cnnsweep.config import ConfigError, save_config, validate_config

SWEEP = {"name": "tiny", "data": {"name": "digits"}, "model": {"num_stages": 2, "width": 8},
         "train": {"epochs": 1, "lr": 1e-3, "batch_size": 64},
         "search": {"algorithm": "grid", "max_concurrent": 1, "space": {"model.width": {"choice": [4, 8]}}}}


class ReachedTrials(Exception):
    """Raised where the sweep would start its trials: every check before it passed."""


@pytest.fixture
def no_ray(monkeypatch):
    import cnnsweep.distributed.cluster as cluster
    import cnnsweep.distributed.tune.run as run

    def build_trainable(*args, **kwargs):
        raise ReachedTrials

    monkeypatch.setattr(cluster, "start_ray", lambda *a, **k: {"CPU": 2.0})
    monkeypatch.setattr(run, "build_trainable", build_trainable)


def _sweep(**changes):
    raw = SWEEP | changes
    return validate_config(raw)


def test_a_second_sweep_on_a_locked_folder_is_refused(tmp_path, no_ray, another_process_holds):
    from cnnsweep.distributed.tune import run_sweep

    out = tmp_path / "sweep"
    with another_process_holds(out):  # the first sweep, still running
        with pytest.raises(ConfigError, match="in use by another cnnsweep process"):
            run_sweep(_sweep(), str(out))
        with pytest.raises(ConfigError, match="in use"):
            run_sweep(_sweep(), str(out), resume=True)
    with pytest.raises(ReachedTrials):
        run_sweep(_sweep(), str(out))


def test_a_fresh_sweep_refuses_a_used_folder(tmp_path, no_ray):
    from cnnsweep.distributed.tune import run_sweep

    out = tmp_path / "sweep"
    (out / "train").mkdir(parents=True)  # e.g. a `cnnsweep train` run, whose Ray Train folder trials share
    with pytest.raises(ConfigError, match="already holds train: pass --resume"):
        run_sweep(_sweep(), str(out))


def test_resume_refuses_a_changed_sweep_and_names_the_differences(tmp_path, no_ray):
    from cnnsweep.distributed.tune import run_sweep

    out = tmp_path / "sweep"
    save_config(_sweep(), out / "sweep.yaml")
    changed = _sweep(train=SWEEP["train"] | {"lr": 3e-3},
                     search=SWEEP["search"] | {"space": {"model.width": {"choice": [4, 16]}}})
    with pytest.raises(ConfigError) as err:
        run_sweep(changed, str(out), resume=True)
    assert "train.lr: 0.001 -> 0.003" in str(err.value)
    assert "search.space.model.width.choice: [4, 8] -> [4, 16]" in str(err.value)
    with pytest.raises(ReachedTrials):  # the same config resumes
        run_sweep(_sweep(), str(out), resume=True)
    with pytest.raises(ConfigError, match="no sweep to continue"):
        run_sweep(_sweep(), str(tmp_path / "empty"), resume=True)
