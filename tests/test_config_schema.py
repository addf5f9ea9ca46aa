"""`cnnsweep schema`: the JSON Schema of a sweep file (descriptions and units for editors) accepts every
shipped sweep file and rejects what validation rejects."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from cnnsweep.cli import app
from cnnsweep.sweep.space import sweep_file_schema

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = sweep_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_the_schema_accepts_every_shipped_sweep_file(validator, path):
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors


@pytest.mark.parametrize("raw", [
    {"model": {"name": "timm/resnet18", "num_stages": 3}},  # a cnn field under timm
    {"train": {"lrr": 1}},
    {"train": {"lr": 0}},
    {"search": {"space": {"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}}},  # two distributions
    {"search": {"space": {"train.lrr": {"choice": [1]}}}},  # not a run-config path
    {"search": {"algorithm": "bayes"}},
])
def test_the_schema_rejects_what_validation_rejects(validator, raw):
    assert list(validator.iter_errors(raw))


def test_every_field_has_a_description():
    schema = sweep_file_schema()
    missing = [f"{name}.{key}" for name, d in schema["$defs"].items() if d.get("type") == "object"
               for key, prop in d.get("properties", {}).items() if not prop.get("description")]
    missing += [k for k, p in schema["properties"].items() if not p.get("description")]
    assert not missing


def test_schema_command_prints_or_writes_the_schema(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == sweep_file_schema()
    out = tmp_path / "cnnsweep.schema.json"
    result = runner.invoke(app, ["schema", "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == sweep_file_schema()
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"output": str(out)}
    bad = runner.invoke(app, ["schema", "--output", str(tmp_path / "cnnsweep.schema.json" / "s.json")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "--output" in bad.output
