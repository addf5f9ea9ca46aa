"""`cnnsweep train -o X`: refuse a used folder without --resume, refuse a changed config on --resume,
one run per folder (lock), result.json replaced atomically. No Ray is started: `start_ray` is replaced
by a sentinel that says the checks let the run through."""

from __future__ import annotations

import json


import pytest
from typer.testing import CliRunner

from cnnsweep.config import ConfigError, load_config, save_config, validate_config

TINY = {"name": "tiny", "data": {"name": "digits"}, "model": {"num_stages": 2, "width": 8},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 64}}


class ReachedRay(Exception):
    """Raised where Ray would start: every check before it passed."""


@pytest.fixture
def no_ray(monkeypatch):
    import cnnsweep.distributed.cluster as cluster

    def start_ray(*args, **kwargs):
        raise ReachedRay

    monkeypatch.setattr(cluster, "start_ray", start_ray)


def _used_output(tmp_path):
    """An output a previous `train` left: its config and a Ray Train run folder."""
    out = tmp_path / "run"
    save_config(validate_config(TINY), out / "config.yaml")
    (out / "train").mkdir()
    return out


def test_train_refuses_a_used_output_without_resume(tmp_path, no_ray):
    from cnnsweep.distributed.train_job import run_train_job

    out = _used_output(tmp_path)
    changed = validate_config(TINY | {"train": TINY["train"] | {"lr": 3e-3}})
    with pytest.raises(ConfigError, match="is not empty .*config.yaml.*pass --resume"):
        run_train_job(changed, output=str(out))
    assert load_config(out / "config.yaml").train.lr == 1e-3  # the old run's config is untouched


def test_train_resume_refuses_a_changed_config_and_accepts_the_same(tmp_path, no_ray):
    from cnnsweep.distributed.train_job import run_train_job

    out = _used_output(tmp_path)
    changed = validate_config(TINY | {"train": TINY["train"] | {"lr": 3e-3}})
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.001 -> 0\.003"):
        run_train_job(changed, output=str(out), resume=True)
    with pytest.raises(ReachedRay):
        run_train_job(validate_config(TINY), output=str(out), resume=True)
    with pytest.raises(ConfigError, match="no run to continue"):
        run_train_job(validate_config(TINY), output=str(tmp_path / "empty"), resume=True)


def test_train_on_a_folder_another_run_holds_is_refused(tmp_path, no_ray, another_process_holds):
    from cnnsweep.distributed.train_job import run_train_job

    out = tmp_path / "run"
    with another_process_holds(out):
        with pytest.raises(ConfigError, match="in use by another cnnsweep process"):
            run_train_job(validate_config(TINY), output=str(out))
    with pytest.raises(ReachedRay):  # free again, and still empty: the refused run wrote nothing
        run_train_job(validate_config(TINY), output=str(out))


def test_cli_train_used_output_exits_2_with_one_line(tmp_path, no_ray):
    from cnnsweep.cli import app

    out = _used_output(tmp_path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY | {"train": TINY["train"] | {"lr": 3e-3}}))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(out)])
    assert result.exit_code == 2 and "pass --resume" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(out), "--resume"])
    assert result.exit_code == 2 and "train.lr: 0.001 -> 0.003" in result.output
    result = CliRunner().invoke(app, ["train", str(cfg), "--resume"])
    assert result.exit_code == 2 and "--resume needs --output" in result.output


def test_cli_train_with_a_missing_weights_file_exits_2_before_ray(tmp_path, no_ray):
    from cnnsweep.cli import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY | {"model": {"name": "timm/resnet18", "pretrained": True,
                                                "weights": str(tmp_path / "absent.pth")}}))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output  # ReachedRay would be exit 1 with a traceback
    assert "model.weights: file not found" in result.output and "Traceback" not in result.output


def test_result_json_survives_a_failed_rewrite(tmp_path, disk_full_after):
    from cnnsweep.distributed.train_job import save_result

    save_result(tmp_path, {"val_acc": 0.5})
    before = (tmp_path / "result.json").read_bytes()
    with disk_full_after(len(before) + 10), pytest.raises(OSError):
        save_result(tmp_path, {"val_acc": 0.9, "metrics": {f"m{i}": i for i in range(200)}})
    assert (tmp_path / "result.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temp file left behind
