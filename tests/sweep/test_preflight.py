"""Sweep preflight: every model.name x model.pretrained branch is checked before the first trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import save_file

from cnnsweep.config import ConfigError, load_config, validate_config
from cnnsweep.sweep.preflight import Branch, enumerate_branches, preflight_sweep
from cnnsweep.sweep.space import load_search, sample_overrides

REPO = Path(__file__).resolve().parents[2]
NAMES = ["cnn", "timm/test_resnet", "timm/test_efficientnet"]


def _sweep(unavailable: str = "refuse", names=NAMES, **extra) -> dict:
    space = {"model.name": {"choice": names},
             "model.pretrained": {"choice": [True, False], "when": {"model.name": "timm/*"}},
             "model.freeze": {"choice": ["none", "backbone"], "when": {"model.pretrained": True}},
             "train.lr": {"loguniform": [1e-4, 1e-2]}}
    return {"search": {"space": space, "unavailable": unavailable, "num_samples": 4} | extra}


def _no_weights(cfg, branch: Branch):
    """Stand-in check: every pretrained branch lacks weights; everything else runs."""
    return "weights not in the Hugging Face cache: put them there" if branch.pretrained else None


def _sampled(cfg, n: int = 60) -> list[dict]:
    search = load_search(cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [sample_overrides(search, study.ask()) for _ in range(n)]


def test_branches_follow_choices_and_when():
    cfg = validate_config(_sweep())
    labels = {(b.name, b.pretrained) for b in enumerate_branches(cfg, load_search(cfg))}
    assert labels == {("cnn", False), ("timm/test_resnet", True), ("timm/test_resnet", False),
                      ("timm/test_efficientnet", True), ("timm/test_efficientnet", False)}


def test_refuse_names_each_branch_and_the_fix_on_one_line():
    with pytest.raises(ConfigError) as info:
        preflight_sweep(validate_config(_sweep()), check=_no_weights)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("search: branch model.name=timm/test_resnet, model.pretrained=true cannot run")
    assert "put them there" in lines[0] and "search.unavailable: drop" in lines[0]


def test_drop_never_samples_a_dropped_branch_and_keeps_the_rest():
    cfg, notes = preflight_sweep(validate_config(_sweep("drop")), check=_no_weights)
    assert len(notes) == 2 and all("left out" in n for n in notes)
    points = _sampled(cfg)
    assert not any(p.get("model.pretrained") for p in points)
    assert "model.freeze" not in cfg.search["space"]  # only reachable through pretrained=true
    assert {p["model.name"] for p in points} == set(NAMES)


def test_drop_keeps_pretrained_where_the_weights_are():
    only_resnet = lambda cfg, b: "no weights" if b.pretrained and b.name != "timm/test_resnet" else None  # noqa: E731
    cfg, notes = preflight_sweep(validate_config(_sweep("drop")), check=only_resnet)
    assert len(notes) == 1
    pretrained = {p["model.name"] for p in _sampled(cfg) if p.get("model.pretrained")}
    assert pretrained == {"timm/test_resnet"}


def test_drop_removes_a_model_that_does_not_exist():
    cfg, notes = preflight_sweep(validate_config(_sweep("drop", names=["cnn", "timm/no_such_net"])))
    assert cfg.search["space"]["model.name"]["choice"] == ["cnn"]
    assert any("unknown timm model 'no_such_net'" in n for n in notes)


def test_the_base_branch_is_never_dropped():
    raw = _sweep("drop") | {"model": {"name": "timm/test_resnet", "pretrained": True}}
    with pytest.raises(ConfigError, match="base config's branch"):
        preflight_sweep(validate_config(raw), check=_no_weights)


@pytest.fixture
def empty_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def test_real_check_uses_the_cache_offline(empty_offline_cache):
    raw = _sweep("drop", names=["cnn", "timm/test_resnet"])
    cfg, notes = preflight_sweep(validate_config(raw))
    assert len(notes) == 1 and "HF_HUB_OFFLINE=1" in notes[0]
    snap = empty_offline_cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("r1")
    save_file({"x": torch.zeros(1)}, str(snap / "model.safetensors"))
    assert preflight_sweep(validate_config(raw)) == (validate_config(raw), [])


def test_unreachable_hub_is_refused_when_online(empty_offline_cache, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    with pytest.raises(ConfigError, match="hub is unreachable .ConnectionError: Name or service not known"):
        preflight_sweep(validate_config(_sweep(names=["cnn", "timm/test_resnet"])))


def test_gtsrb_sweep_offers_no_branch_that_cannot_run_offline(empty_offline_cache):
    cfg, notes = preflight_sweep(load_config(REPO / "sweeps" / "gtsrb.yaml"))
    assert notes  # this machine (and this test) has no cached weights: the pretrained branches go
    assert not any(p.get("model.pretrained") for p in _sampled(cfg, 100))


def test_tune_refuses_before_ray_starts_and_exits_2(tmp_path, empty_offline_cache, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    import cnnsweep.distributed.cluster as cluster
    from cnnsweep.cli import app

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started although the sweep had a branch that cannot run")

    monkeypatch.setattr(cluster, "start_ray", no_ray)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_sweep(names=["cnn", "timm/test_resnet"]), sort_keys=False))
    result = CliRunner().invoke(app, ["tune", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "branch model.name=timm/test_resnet, model.pretrained=true cannot run" in result.output
    assert "Traceback" not in result.output
