"""`cnnsweep serve` argument errors: caught before Ray starts, exit 2 with a message."""

from __future__ import annotations

from typer.testing import CliRunner

from cnnsweep.cli import app


def test_serve_missing_model_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2 and "model file not found" in result.output


def test_serve_name_count_must_match_models(tmp_path):
    result = CliRunner().invoke(app, ["serve", "a.onnx", "b.onnx", "--name", "only-one"])
    assert result.exit_code == 2 and "one per model" in result.output


def test_serve_rejects_a_file_that_is_not_a_cnnsweep_export(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    result = CliRunner().invoke(app, ["serve", str(junk)])
    assert result.exit_code == 2 and "cannot load" in result.output
