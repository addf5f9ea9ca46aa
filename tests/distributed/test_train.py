"""Ray Train: a 2-worker DDP run from the CLI, and resume after a worker is killed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnsweep.checkpoint import load_checkpoint, load_model_from_checkpoint
from cnnsweep.config import validate_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = {"name": "tiny", "data": {"name": "digits"},
        "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
        "sched": {"name": "none"},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 64, "micro_batch_size": 16, "amp": "bf16"},
        "scaling": {"num_workers": 2}}


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_cli_trains_two_ddp_workers_with_accumulation(ray_session, tmp_path):
    from cnnsweep.cli import app

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(json.dumps(TINY))  # JSON is YAML
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(cfg_path), "--output", str(out), "--json",
                                      "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.stdout)
    assert summary["epochs"] == 2 and summary["test_acc"] is None
    assert summary["val_acc"] > 0.3  # 10 classes: chance is 0.1
    state = load_checkpoint(summary["checkpoint"])
    assert state.epoch == 1 and state.config["scaling"]["num_workers"] == 2
    assert (out / "config.yaml").is_file() and (Path(summary["checkpoint"]) / "config.yaml").is_file()
    loaded = load_model_from_checkpoint(summary["checkpoint"])
    assert loaded.class_names == [str(i) for i in range(10)] or len(loaded.class_names) == 10
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(k in history[-1] for k in ("train/loss", "val/loss", "val/acc", "val/f1_macro", "images_per_s"))


def test_worker_crash_resumes_from_last_checkpoint(ray_session, tmp_path):
    from cnnsweep.distributed import train as ray_train
    from cnnsweep.data import load_dataset

    marker = tmp_path / "crashed"
    # rank 0 kills itself (os._exit) once, at the end of epoch 1, before reporting it
    cfg = validate_config(TINY | {"train": TINY["train"] | {"epochs": 3},
                                  "scaling": {"num_workers": 2, "max_failures": 1}})
    outcome = ray_train.run_candidate(cfg, tmp_path / "run", load_dataset(cfg.data),
                                      worker_env={ray_train.CRASH_ENV: str(marker)})
    assert marker.exists(), "the worker never crashed: the test did not test anything"
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    epochs = [int(h["epoch"]) for h in history]
    # epoch 1 never reported before the crash; the restarted workers resumed from epoch 0's
    # checkpoint (a restart from scratch would log epoch 0 twice)
    assert epochs == [0, 1, 2], epochs
    assert load_checkpoint(outcome.checkpoint).epoch == 2


def test_train_resume_continues_an_interrupted_run_from_its_last_checkpoint(ray_session, tmp_path, monkeypatch):
    """A run dies at epoch 1 with no retries left; `train -o X` again is refused; `--resume` goes on
    from epoch 0's checkpoint (the path `cnnsweep train --resume` takes: run_train_job). Resuming it once
    more, with every epoch done, answers from its checkpoints without training or starting Ray."""
    from ray.train import TrainingFailedError

    from cnnsweep.config import ConfigError, save_config
    from cnnsweep.data import load_dataset
    from cnnsweep.distributed import train as ray_train
    from cnnsweep.distributed.train_job import run_train_job

    marker, out = tmp_path / "crashed", tmp_path / "run"
    cfg = validate_config(TINY | {"train": TINY["train"] | {"epochs": 3, "micro_batch_size": None},
                                  "scaling": {"num_workers": 1, "max_failures": 0}})
    save_config(cfg, out / "config.yaml")  # as `cnnsweep train` leaves it
    with pytest.raises(TrainingFailedError):
        ray_train.run_candidate(cfg, out, load_dataset(cfg.data), worker_env={ray_train.CRASH_ENV: str(marker)})
    assert marker.exists(), "the worker never crashed: the test did not test anything"
    with pytest.raises(ConfigError, match="pass --resume"):
        run_train_job(cfg, output=str(out))
    summary = run_train_job(cfg, output=str(out), resume=True)
    epochs = [int(json.loads(x)["epoch"]) for x in (out / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2], epochs  # from scratch would be [0, 1, 2]
    assert summary["epochs"] == 3 and load_checkpoint(summary["checkpoint"]).epoch == 2
    assert json.loads((out / "result.json").read_text())["epochs"] == 3

    history = (out / "history.jsonl").read_text()

    def no_ray(*args, **kwargs):
        raise AssertionError("a finished run was resumed through Ray")

    monkeypatch.setattr(ray_train, "run_candidate", no_ray)
    monkeypatch.setattr("cnnsweep.distributed.cluster.start_ray", no_ray)
    again = run_train_job(cfg, output=str(out), resume=True)
    assert (out / "history.jsonl").read_text() == history  # nothing trained
    keys = ("val_acc", "val_f1_macro", "checkpoint", "best_checkpoint", "epochs", "metrics")
    assert {k: again[k] for k in keys} == {k: summary[k] for k in keys}
    assert "already done" in again["notes"][-1]


def test_the_train_poll_interval_is_shortened_unless_the_user_set_one(monkeypatch, tmp_path):
    """Each epoch lasts at least one of the controller's polling intervals (see TRAIN_POLL_ENV)."""
    import os

    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE, HEALTH_CHECK_INTERVAL_S_ENV_VAR

    from cnnsweep.distributed.train import TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S, build_trainer

    # the variable Ray's controller reads, and passes from the process that starts the run to its workers
    assert TRAIN_POLL_ENV == HEALTH_CHECK_INTERVAL_S_ENV_VAR and TRAIN_POLL_ENV in ENV_VARS_TO_PROPAGATE
    monkeypatch.delenv(TRAIN_POLL_ENV, raising=False)
    build_trainer(validate_config({}), None, storage_path=str(tmp_path), name="t")
    assert os.environ[TRAIN_POLL_ENV] == TRAIN_POLL_INTERVAL_S
    monkeypatch.setenv(TRAIN_POLL_ENV, "3")
    build_trainer(validate_config({}), None, storage_path=str(tmp_path), name="t")
    assert os.environ[TRAIN_POLL_ENV] == "3"


def test_the_controller_and_a_trial_import_no_engine():
    """Ray Train's controller unpickles `train_loop_per_worker` and a Tune trial builds the trainer: both
    import these modules, and neither needs the engine's torchvision and scikit-learn (seconds per process)."""
    import subprocess
    import sys

    code = ("import sys, cnnsweep.distributed.train, cnnsweep.distributed.tune.trial; "
            "print(sorted(m for m in ('torchvision', 'sklearn', 'timm', 'cnnsweep.engine.fit') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]", done.stdout
