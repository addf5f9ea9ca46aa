"""The `search` section: schema checks (exit 2 via the CLI), conditional define-by-run space, grids."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from cnnsweep.cli import app
from cnnsweep.config import ConfigError, config_to_dict, load_config, validate_config
from cnnsweep.sweep.space import (baseline_params, expand_grid, load_search, optuna_distributions,
                                   sample_overrides)

REPO = Path(__file__).resolve().parents[2]
BASE = {"name": "t", "data": {"name": "digits"}, "train": {"epochs": 3}}
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _search(search: dict, base: dict = BASE):
    return load_search(validate_config(base | {"search": search}))


def _sample(search, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    return [sample_overrides(search, study.ask()) for _ in range(n)]


@pytest.mark.parametrize("search, expected", [
    ({"space": {"train.lrr": {"loguniform": [1e-4, 1e-2]}}}, "'train.lrr' is not a run-config path"),
    ({"space": {"optimizer.lr": {"uniform": [0.1, 0.2]}}}, "'optimizer.lr' is not a run-config path"),
    ({"space": {"train.lr": {"lognormal": [1e-4, 1e-2]}}}, "expected exactly one of choice, uniform"),
    ({"space": {"train.lr": {"loguniform": [0, 1e-2]}}}, "loguniform needs low > 0"),
    ({"space": {"train.lr": {"uniform": [0.2, 0.1]}}}, "needs low < high"),
    ({"space": {"model.activation": {"choice": ["relu", "swish"]}}}, "search.space.model.activation = 'swish'"),
    ({"space": {"model.dropout": {"uniform": [0.1, 1.5]}}}, "model.dropout: must be less than 1"),
    ({"space": {"data.clahe_clip": {"uniform": [1, 4], "when": {"data.equalize": "clahe"}}}},
     "not a parameter listed before it"),
    ({"algorithm": "grid", "space": {"train.lr": {"uniform": [0.1, 0.2]}}}, "grid needs choice or int"),
    ({"metric": "val/loss", "space": {"train.lr": {"uniform": [0.1, 0.2]}}}, "use mode: min"),
    ({"scheduler": {"grace_period": 9}, "space": {"train.lr": {"uniform": [1e-4, 1e-2]}}},
     "must be <= train.epochs"),
    ({"algorithm": "grid", "ablation": {"no_bn": {"model.batchnorm": False}}}, "search.ablation.no_bn"),
    ({"space": {"model.width": {"choice": [8, 16]}}}, "base config's model.width = 32 is not in"),
    ({"algorithm": "optuna", "seeds": [0, 1], "space": {"train.lr": {"uniform": [1e-4, 1e-2]}}},
     "need algorithm: grid"),
])
def test_bad_search_exits_2_with_the_path(tmp_path, search, expected):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps(BASE | {"search": search}))
    result = CliRunner().invoke(app, ["tune", str(sweep), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert expected in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing started


def test_sweep_without_search_section_exits_2(tmp_path):
    sweep = tmp_path / "run.yaml"
    sweep.write_text(json.dumps(BASE))
    result = CliRunner().invoke(app, ["tune", str(sweep)])
    assert result.exit_code == 2 and "no `search` section" in result.output


def test_conditional_parameters_are_sampled_only_when_their_condition_holds():
    search = _search({"baseline_first": False, "space": {
        "model.name": {"choice": ["cnn", "timm/resnet18"]},
        "model.freeze": {"choice": ["none", "backbone"], "when": {"model.name": "timm/*"}},
        "model.width": {"choice": [8, 16], "when": {"model.name": "cnn"}},
        "model.dropout": {"choice": [0.0, {"uniform": [0.1, 0.5]}], "when": {"model.name": "cnn"}},
        "data.equalize": {"choice": ["none", "clahe"]},
        "data.clahe_clip": {"uniform": [1.0, 4.0], "when": {"data.equalize": "clahe"}},
    }})
    samples = _sample(search, 40)
    for s in samples:
        assert ("model.freeze" in s) == s["model.name"].startswith("timm/")
        assert ("model.width" in s) == (s["model.name"] == "cnn")
        assert ("data.clahe_clip" in s) == (s["data.equalize"] == "clahe")
        assert ("model.dropout" in s) == (s["model.name"] == "cnn")  # a cnn field, not a timm one
        assert s.get("model.dropout", 0.0) == 0.0 or 0.1 <= s["model.dropout"] <= 0.5
    # both sides of every condition were actually seen, so the checks above tested something
    assert {s["model.name"] for s in samples} == {"cnn", "timm/resnet18"}
    assert {s["data.equalize"] for s in samples} == {"none", "clahe"}
    assert any(s.get("model.dropout") == 0.0 for s in samples) and any(s.get("model.dropout", 0) > 0 for s in samples)


def test_sampled_params_fit_the_rebuilt_optuna_distributions():
    search = _search({"baseline_first": False, "space": {
        "model.dropout": {"choice": [0.1, {"uniform": [0.2, 0.5]}]},
        "model.num_stages": {"int": [2, 4]}}})
    dists = optuna_distributions(search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(1))
    for _ in range(10):
        trial = study.ask()
        sample_overrides(search, trial)
        assert set(trial.params) <= set(dists)
        optuna.trial.create_trial(params=trial.params, distributions={k: dists[k] for k in trial.params},
                                  value=0.5)  # raises if a value does not fit its distribution


def test_grid_product_skips_inactive_parameters_and_repeats_seeds():
    search = _search({"algorithm": "grid", "seeds": [0, 1], "space": {
        "model.name": {"choice": ["cnn", "timm/resnet18"]},
        "model.batch_norm": {"choice": [True, False], "when": {"model.name": "cnn"}},
        "model.num_stages": {"int": [2, 3], "when": {"model.name": "cnn"}},
    }})
    points = expand_grid(search)
    # cnn: 2 x 2 combinations, timm: 1 (its cnn-only parameters are not crossed in); x 2 seeds
    assert len(points) == (4 + 1) * 2
    timm = [p.overrides for p in points if p.overrides["model.name"] == "timm/resnet18"]
    assert timm == [{"model.name": "timm/resnet18", "train.seed": 0},
                    {"model.name": "timm/resnet18", "train.seed": 1}]
    assert len({json.dumps(p.overrides, sort_keys=True) for p in points}) == len(points)


def test_ablation_is_baseline_plus_one_variant_each_with_the_same_seeds():
    cfg = load_config(REPO / "sweeps" / "ablation.yaml")
    search = load_search(cfg)
    points = expand_grid(search)
    seeds = search.seeds
    assert len(points) == (1 + len(search.ablation)) * len(seeds)
    baseline = [p for p in points if p.label.startswith("baseline")]
    assert [p.overrides for p in baseline] == [{"train.seed": s} for s in seeds]
    for name, variant in search.ablation.items():
        runs = [p for p in points if p.label.split(" seed=")[0] == name]
        assert [p.overrides for p in runs] == [variant | {"train.seed": s} for s in seeds]


def test_baseline_first_reproduces_the_base_config():
    cfg = load_config(REPO / "sweeps" / "quickstart.yaml")
    search = load_search(cfg)
    base = config_to_dict(cfg)
    study = optuna.create_study()
    study.enqueue_trial(baseline_params(search, base))
    overrides = sample_overrides(search, study.ask())
    assert overrides and all(base[k.split(".")[0]][k.split(".")[1]] == v for k, v in overrides.items())


@pytest.mark.parametrize("name", ["quickstart", "gtsrb", "ablation", "ahe", "mnist"])
def test_shipped_sweeps_are_valid(name):
    search = load_search(load_config(REPO / "sweeps" / f"{name}.yaml"))
    assert search.factors


def test_load_search_collects_type_errors_by_path():
    with pytest.raises(ConfigError) as err:
        _search({"num_samples": 0, "mode": "up", "space": {"train.lr": {"uniform": [1e-4, 1e-2]}}})
    assert "search.num_samples" in str(err.value) and "search.mode" in str(err.value)


def test_default_startup_trials_is_half_the_trials_within_4_to_10():
    from cnnsweep.sweep.space import SearchConfig, default_startup_trials

    def auto(n):
        return default_startup_trials(SearchConfig.model_validate({"num_samples": n, "space": {"train.lr": {"choice": [0.1]}}}))

    assert [auto(n) for n in (2, 6, 12, 20, 32, 200)] == [4, 4, 6, 10, 10, 10]
    explicit = SearchConfig.model_validate({"num_samples": 32, "startup_trials": 3, "space": {"train.lr": {"choice": [0.1]}}})
    assert default_startup_trials(explicit) == 3
