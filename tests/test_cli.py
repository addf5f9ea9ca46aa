"""The command line: thin commands, exit 2 with one clear line on bad input, --json output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnnsweep.cli import app

runner = CliRunner()


def _write(tmp_path, text, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, args, expected", [
    ("train: {lr: 0}\n", [], "train.lr: must be greater than 0"),
    ("train: {lrr: 1}\n", [], "train.lrr: unknown key"),
    ("model: {pooling: fancy}\n", [], "model.pooling"),
    ("train: {epochs: 1}\n", ["--set", "train.epochs=-3"], "train.epochs"),
    ("train: {epochs: 1}\n", ["--set", "nonsense"], "expected dotted.key=value"),
    ("data: {name: gtsrb_pickle, root: /nonexistent/gtsrb}\n", [], "data.root"),
])
def test_train_bad_input_exits_2_without_traceback(tmp_path, text, args, expected):
    result = runner.invoke(app, ["train", _write(tmp_path, text), *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_missing_config_file_exits_2(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_summary_json_and_memory_suggestion(tmp_path):
    cfg = _write(tmp_path, "data: {name: digits}\nmodel: {num_stages: 2, width: 8}\ntrain: {batch_size: 256}\n")
    result = runner.invoke(app, ["summary", cfg, "--memory", "4MiB", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    text = json.dumps(report)
    assert "flops" in text.lower() and "params" in text.lower()
    bad = runner.invoke(app, ["summary", cfg, "--memory", "lots"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("train", "summary"):
        assert cmd in result.output
