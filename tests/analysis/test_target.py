"""What TARGET may be: bad inputs exit 2 with one line; an ONNX target runs through ONNX Runtime and
the server's preprocessing and gives the PyTorch model's predictions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnsweep.analysis.run import analyze_target
from cnnsweep.analysis.metrics_file import load_metrics
from cnnsweep.cli import app

pytestmark = pytest.mark.slow


def _run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def _one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in result.output and text.startswith("error:"), result.output
    for w in words:
        assert w in text, result.output


def test_no_such_path(tmp_path):
    _one_line_exit_2(_run(tmp_path / "nope"), "no such")


def test_folder_that_is_no_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _one_line_exit_2(_run(tmp_path), "no checkpoint.pt")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a zip file at all")
    _one_line_exit_2(_run(tmp_path / "checkpoint.pt"), "cannot be loaded safely")


def test_corrupt_onnx_and_bad_split(tmp_path, digits_checkpoint):
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    _one_line_exit_2(_run(tmp_path / "m.onnx"), "cannot load it")
    _one_line_exit_2(_run(digits_checkpoint, "--split", "train"), "--split")


def test_onnx_target_matches_pytorch(digits_checkpoint, tmp_path):
    from cnnsweep.export import export_checkpoint

    onnx_path = tmp_path / "digits.onnx"
    export_checkpoint(digits_checkpoint, onnx_path)
    result = _run(onnx_path, "--split", "valid", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    out = tmp_path / "digits-analysis"
    assert summary["output"] == str(out.resolve())
    m = load_metrics(out)  # the file, read back through its schema
    assert m.target.kind == "onnx" and m.explain is None and any("ONNX" in n for n in m.notes)
    torch_m = analyze_target(digits_checkpoint, split="valid", output=tmp_path / "torch", explain=False)
    onnx_logits = np.load(out / "predictions.npz")["logits"]
    torch_logits = np.load(tmp_path / "torch" / "predictions.npz")["logits"]
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    assert m.models[0].summary.accuracy == torch_m.models[0].summary.accuracy
    assert (out / "report.html").is_file() and m.per_class["galleries"]


def test_run_folder_and_data_root(digits_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_checkpoint, run / "checkpoints" / "epoch1")
    m = analyze_target(run, split="valid", data_root=None, explain=False)
    assert m.target.kind == "run" and m.output == str((run / "analysis").resolve())


def test_an_onnx_target_that_names_external_data_is_refused(plant_onnx, tmp_path):
    _one_line_exit_2(_run(plant_onnx("external data", tmp_path)), "external data")


def test_an_onnx_target_whose_metadata_does_not_describe_its_graph_is_refused(tiny_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7  # 7 logits, 3 class names
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    _one_line_exit_2(_run(tmp_path / "m.onnx"), "3 classes")
