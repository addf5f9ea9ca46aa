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


def _summary(cfg: str, memory: str) -> dict:
    result = runner.invoke(app, ["summary", cfg, "--memory", memory, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_summary_memory_suggests_the_largest_micro_batch_that_fits(tmp_path):
    cfg = _write(tmp_path, "data: {name: digits}\nmodel: {num_stages: 2, width: 8}\ntrain: {batch_size: 256}\n")
    roomy = _summary(cfg, "64MiB")
    assert roomy["suggestion"] == [256, 1]  # the whole per-worker batch fits: no accumulation
    tight = _summary(cfg, "1MiB")
    fixed = tight["weight_bytes"] + tight["grad_bytes"] + tight["optimizer_bytes"]  # independent of batch
    per_image = tight["activation_bytes_per_image"]
    budget = 0.9 * 2**20  # the 10% headroom of suggest_micro_batch
    micro, accum = tight["suggestion"]
    assert micro * accum == 256 and accum > 1
    assert fixed + per_image * micro <= budget < fixed + per_image * 2 * micro  # largest power of two that fits
    assert tight["total_params"] == tight["trainable_params"] > 0
    bad = runner.invoke(app, ["summary", cfg, "--memory", "lots"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


COMMANDS = ("train", "summary", "tune", "export", "serve", "analyze", "predict", "schema")  # schema: tests/test_config_schema.py


def test_help_lists_every_command_and_each_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in result.output
        sub = runner.invoke(app, [cmd, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output, (cmd, sub.output)
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert registered == set(COMMANDS)  # a new command must be added here, with its own tests
