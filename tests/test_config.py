"""Config: strict validation with dotted-path errors, --set overrides, round trips."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from cnnsweep.config import (ConfigError, apply_overrides, config_from_json, config_to_json,
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
    ({"model": {"name": "resnet"}}, "model.name: unknown model 'resnet'; registered: cnn, timm/<name>, torchvision/<name>"),
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
        if cfg.search is None:
            continue  # a run config (gtsrb_peer, gtsrb_long): `cnnsweep train` only
        search = load_search(cfg)
        assert search.space or search.ablation, f"{path.name}: a sweep file with nothing to search"


# ---------------------------------------------------------------- hostile config files (issue 10)
# Before: UnicodeDecodeError / RecursionError / PermissionError tracebacks (exit 1); huge files read whole.

from typer.testing import CliRunner  # noqa: E402

from cnnsweep.cli import app  # noqa: E402
from cnnsweep.config import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH  # noqa: E402

BAD_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" * 10, "not a text \\(UTF-8\\) file"),
    "deep-flow": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep-block": (b"".join(b"  " * i + b"k:\n" for i in range(MAX_CONFIG_DEPTH + 1)) + b"  " * 40 + b"v",
                   f"nested deeper than {MAX_CONFIG_DEPTH}"),
    "alias-bomb": (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                   + b"".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode()
                              for i in range(8)), "after expanding aliases"),
    "too-large": (b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), "larger than"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_hostile_config_files_are_one_line_config_errors(tmp_path, name):
    data, expected = BAD_FILES[name]
    path = tmp_path / "cfg.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_hostile_config_files_exit_2_via_the_cli(tmp_path, name):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(BAD_FILES[name][0])
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and re.search(BAD_FILES[name][1], result.output)


def test_unreadable_config_is_a_config_error(tmp_path, monkeypatch):
    # Tests run as root, where chmod 000 still reads: simulate the open() failing instead.
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {epochs: 1}\n")
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: denied(self).read())
    with pytest.raises(ConfigError, match="cannot read config file \\(Permission denied\\)"):
        load_config(path)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and "Permission denied" in result.output and "Traceback" not in result.output


def test_save_config_kill_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    save_config(validate_config({"name": "old"}), path)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))

    def die(*args):
        raise KeyboardInterrupt  # stands in for a kill between writing and renaming

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        save_config(validate_config({"name": "new"}), path)
    assert load_config(path).name == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no stale temp file
    assert synced, "the new bytes must be fsynced before the rename"
