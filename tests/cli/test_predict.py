"""`cnnsweep predict` from the command line: CSV, --json, --top-k, on-the-fly export, bad input exits 2."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cnnsweep.cli import app

pytestmark = pytest.mark.slow


def test_predict_a_checkpoint_on_a_split_with_json(tiny_gtsrb_sweep, gtsrb_root, tmp_path):
    ckpt = next(tiny_gtsrb_sweep.glob("t1_gray/checkpoints/epoch_*"))
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["predict", str(ckpt), f"gtsrb_pickle:{gtsrb_root}:valid", "-o", str(out),
                                   "--top-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["num_images"] == 4320 and summary["exported_from"] == str(ckpt) and 0 <= summary["accuracy"] <= 1
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4320 and "top2_class_name" in rows[0] and rows[0]["true_label"] != ""


@pytest.mark.parametrize("args, words", [
    (["predict", "/nonexistent/model.onnx", "gtsrb_pickle:{root}:valid"], "no such model"),
    (["predict", "{sweep}", "/nonexistent/images"], "no such file or folder"),
    (["predict", "{sweep}", "gtsrb_pickle:{root}:test"], "no test split"),
])
def test_bad_input_exits_2_with_one_line(tiny_gtsrb_sweep, gtsrb_root, args, words):
    args = [a.format(root=gtsrb_root, sweep=tiny_gtsrb_sweep) for a in args]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and words in res.output and res.output.count("\n") == 1, res.output


def test_skip_bad_from_the_command_line(tiny_gtsrb_sweep, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"not a png")
    args = ["predict", str(tiny_gtsrb_sweep), str(folder), "-o", str(tmp_path / "p.csv")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "bad.png" in res.output and "--skip-bad" in res.output, res.output
    res = CliRunner().invoke(app, [*args, "--skip-bad", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["num_images"] == 1 and summary["num_skipped"] == 1 and summary["skipped"][0]["id"] == "bad.png"
