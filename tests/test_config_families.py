"""Model sections per family (`cnn`, `timm/<arch>`): each family has only its own fields, a field of
another family is an error naming its dotted path, and a sweep may still search model.name across
families."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnsweep.config import (MODEL_FAMILIES, CNNModelConfig, ConfigError, ModelConfig, TimmModelConfig,
                             apply_overrides, config_to_dict, load_config, model_family, validate_config)

REPO = Path(__file__).resolve().parents[1]


def test_the_name_picks_the_family_section():
    assert isinstance(validate_config({}).model, CNNModelConfig)
    cfg = validate_config({"model": {"name": "timm/resnet18", "pretrained": True, "freeze": "backbone"}})
    assert isinstance(cfg.model, TimmModelConfig) and cfg.model.pretrained
    assert not hasattr(cfg.model, "num_stages")
    assert model_family("timm/resnet18") == "timm/" and model_family("cnn") == "cnn"
    assert model_family("timm/") is None and model_family("vgg") is None
    assert set(MODEL_FAMILIES) == {"cnn", "timm/", "torchvision/"}


def test_model_config_builds_the_family_section():
    assert isinstance(ModelConfig(width=4), CNNModelConfig)
    assert isinstance(ModelConfig(name="timm/resnet18"), TimmModelConfig)
    assert ModelConfig(width=4).family_args()["width"] == 4
    assert ModelConfig(name="timm/resnet18").family_args() == {}


@pytest.mark.parametrize("model, expected", [
    ({"name": "timm/resnet18", "num_stages": 3}, "model.num_stages: not a field of timm models"),
    ({"name": "timm/resnet18", "dropout": 0.3}, "model.dropout: not a field of timm models"),
    ({"name": "cnn", "nope": 1}, "model.nope: not a field of cnn models"),
    ({"name": "vgg"}, "model.name: unknown model 'vgg'; registered: cnn, timm/<name>, torchvision/<name>"),
    ({"name": "timm/"}, "model.name: unknown model 'timm/'"),
    ({"name": "cnn", "width": 0}, "model.width: must be greater than or equal to 1"),
    ({"name": "timm/resnet18", "freeze_stages": -1}, "model.freeze_stages"),
])
def test_a_field_of_another_family_is_an_error_naming_its_path(model, expected):
    with pytest.raises(ConfigError) as info:
        validate_config({"model": model})
    assert str(info.value).splitlines()[0] == expected or str(info.value).startswith(expected)


def test_switching_the_family_drops_the_old_family_fields_but_not_explicit_ones():
    base = config_to_dict(validate_config({"model": {"num_stages": 4, "width": 8}}))
    cfg = validate_config(apply_overrides(base, {"model.name": "timm/resnet18", "model.pretrained": True}))
    assert isinstance(cfg.model, TimmModelConfig) and cfg.model.pretrained
    with pytest.raises(ConfigError, match="model.num_stages: not a field of timm models"):
        validate_config(apply_overrides(base, {"model.name": "timm/resnet18", "model.num_stages": 2}))
    back = validate_config(apply_overrides(config_to_dict(cfg), ["model.name=cnn", "model.width=16"]))
    assert isinstance(back.model, CNNModelConfig) and back.model.width == 16 and back.model.num_stages == 3


def test_cli_style_set_switches_family(tmp_path):
    cfg = load_config(REPO / "sweeps" / "gtsrb.yaml", ["model.name=timm/resnet18"])
    assert isinstance(cfg.model, TimmModelConfig)


def test_round_trips_keep_the_family():
    from cnnsweep.config import config_from_json, config_to_json

    cfg = validate_config({"model": {"name": "timm/resnet18", "weights": "w.safetensors"}})
    assert config_from_json(config_to_json(cfg)) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_validates(path):
    cfg = load_config(path)
    if cfg.search:
        from cnnsweep.sweep.space import load_search

        load_search(cfg)


def test_config_validates_without_torch():
    code = ("import sys, cnnsweep.config as c; c.load_config('sweeps/gtsrb.yaml'); "
            "c.validate_config({'model': {'name': 'timm/resnet18'}, 'data': {'balance': 'sampler'}}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _search(space: dict) -> None:
    from cnnsweep.sweep.space import load_search

    load_search(validate_config({"train": {"epochs": 2}, "search": {"space": space, "baseline_first": False}}))


def test_a_searched_field_of_one_family_needs_a_condition_on_model_name():
    names = {"choice": ["cnn", "timm/resnet18"]}
    with pytest.raises(ConfigError, match=r"search.space.model.dropout: not a field of timm models.*when"):
        _search({"model.name": names, "model.dropout": {"uniform": [0.1, 0.5]}})
    _search({"model.name": names, "model.dropout": {"uniform": [0.1, 0.5], "when": {"model.name": "cnn"}},
             "model.freeze": {"choice": ["none", "backbone"], "when": {"model.name": "timm/*"}}})
    # conditioned through a parameter that is itself conditioned on model.name
    _search({"model.name": names, "model.batch_norm": {"choice": [True, False], "when": {"model.name": "cnn"}},
             "model.width": {"choice": [8, 16], "when": {"model.batch_norm": True}}})


def test_a_config_saved_before_families_loads_with_the_family_fields_only(tmp_path):
    from cnnsweep.config import check_resumed_config, from_saved_config

    cfg = validate_config({"model": {"name": "timm/resnet18", "pretrained": True}})
    old = config_to_dict(cfg, with_search=True)
    old["model"] |= config_to_dict(validate_config({}))["model"] | {"name": "timm/resnet18", "pretrained": True}
    with pytest.raises(ConfigError, match="not a field of timm models"):
        validate_config(old)
    assert from_saved_config(old) == cfg
    saved = tmp_path / "config.yaml"
    saved.write_text(__import__("yaml").safe_dump(old))
    check_resumed_config(cfg, saved)  # the same experiment: no differences reported
