"""Config: strict validation with dotted-path errors, --set overrides, round trips."""

from __future__ import annotations

import pytest
import yaml

from cnnsweep.config import (ConfigError, RunConfig, apply_overrides, config_from_json, config_to_json,
                             load_config, parse_override, save_config, validate_config)


def test_defaults_are_valid():
    cfg = validate_config({})
    assert cfg.train.batch_size == 128 and cfg.accum_steps == 1


@pytest.mark.parametrize("raw, expected", [
    ({"train": {"lr": 0}}, "train.lr: must be greater than 0"),
    ({"train": {"lr": -1}}, "train.lr"),
    ({"train": {"lrr": 1}}, "train.lrr: unknown key"),
    ({"bogus": {}}, "bogus: unknown key"),
    ({"model": {"activation": "swish"}}, "model.activation"),
    ({"model": {"name": "resnet"}}, "model.name: unknown model 'resnet'; registered: cnn, timm/<name>"),
    ({"data": {"balance": "magic"}}, "data.balance"),
    ({"augment": {"rotation": 400}}, "augment.rotation"),
    ({"scaling": {"num_workers": 0}}, "scaling.num_workers"),
])
def test_errors_name_the_dotted_path(raw, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert expected in str(info.value)


def test_batch_must_divide_into_workers_and_micro_batches():
    with pytest.raises(ConfigError, match="micro_batch_size"):
        validate_config({"train": {"batch_size": 128, "micro_batch_size": 48}})
    with pytest.raises(ConfigError, match="num_workers"):
        validate_config({"train": {"batch_size": 127}, "scaling": {"num_workers": 2}})
    cfg = validate_config({"train": {"batch_size": 256, "micro_batch_size": 64}, "scaling": {"num_workers": 2}})
    assert (cfg.micro_batch, cfg.accum_steps) == (64, 2)


def test_overrides_parse_yaml_scalars_and_validate(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 3}}))
    cfg = load_config(path, ["train.lr=3e-4", "model.batch_norm=false", "data.root=/x/y", "train.epochs=7"])
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.model.batch_norm is False
    assert cfg.data.root == "/x/y" and cfg.train.epochs == 7
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(path, ["train.lr=-1"])
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_override("train.lr")


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=2"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = validate_config({"name": "x", "train": {"lr": 0.01}, "search": {"metric": "val/acc"}})
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(saved)
    assert again == cfg
    assert config_from_json(config_to_json(cfg)).train == cfg.train


def test_shipped_sweeps_validate_with_their_search_sections():
    from pathlib import Path

    from cnnsweep.sweep.space import load_search

    paths = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"ablation", "ahe", "gtsrb", "mnist", "quickstart"}
    for path in paths:
        cfg = load_config(path)  # raises ConfigError on any problem
        search = load_search(cfg)
        assert search.space or search.ablation, f"{path.name}: a sweep file with nothing to search"
