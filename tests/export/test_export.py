"""ONNX export of a real (tiny, digits) trained model: file layout, metadata, self-verification, int8, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import config_to_dict, validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.export import ExportError, OnnxRunner, export_checkpoint, read_metadata, verify_session
from cnnsweep.export import pipeline
from cnnsweep.export.onnx_export import pixel_classifier

pytestmark = pytest.mark.slow  # trains a (tiny) model once per module

DIGITS = {"name": "digits-export", "data": {"name": "digits", "val_fraction": 0.2},
          "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
          "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "amp": "off"}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real training run of a tiny CNN on the embedded digits (seconds on CPU)."""
    cfg = validate_config(DIGITS)
    out = tmp_path_factory.mktemp("digits-run")
    hooks = LocalHooks(output=out)
    fit(cfg, load_dataset(cfg.data), hooks)
    return hooks.last_checkpoint


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_checkpoint(checkpoint, out, int8=True)


def test_export_writes_one_self_contained_file_with_dynamic_batch(exported):
    folder = sorted(p.name for p in __import__("pathlib").Path(exported.onnx).parent.iterdir())
    assert folder == ["digits.onnx", "digits_int8.onnx"]  # no .data side files
    proto = onnx.load(exported.onnx)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    n, h, w, c = proto.graph.input[0].type.tensor_type.shape.dim  # raw pixels at the model's size, any batch
    assert n.dim_param and not n.dim_value and (h.dim_value, w.dim_value, c.dim_value) == (8, 8, 1)
    onnx.checker.check_model(proto, full_check=True)


def test_metadata_round_trip(exported, checkpoint):
    lm = load_model_from_checkpoint(checkpoint)
    info = read_metadata(exported.onnx)
    assert info.class_names == lm.class_names == [str(i) for i in range(10)]
    assert info.preprocess == lm.preprocess  # rebuilt from to_dict(): same mean/std/resize/equalize
    assert info.input_shape == (1, 8, 8)
    assert info.config == config_to_dict(lm.config)
    assert info.metrics["val/acc"] == pytest.approx(lm.metrics["val/acc"])
    assert "train/loss" not in info.metrics
    assert info.precision == "fp32" and info.source == str(lm.path)
    assert OnnxRunner.load(exported.onnx).info.class_names == info.class_names


def test_verification_reported_at_three_batch_sizes(exported):
    v = exported.verification
    assert v["ok"] and [b["batch_size"] for b in v["batches"]] == [1, 7, 64]
    assert v["top1_agreement"] == 1.0 and 0 <= v["max_abs_diff"] <= 1e-4


def test_onnx_matches_pytorch_on_unseen_batch_size(exported, checkpoint):
    lm = load_model_from_checkpoint(checkpoint)
    images = load_dataset(lm.config.data).valid.images[100:113]  # 13: not a verified size
    with torch.inference_mode():
        ref = lm.model(lm.preprocess(images)).numpy()  # the training code path
    got = OnnxRunner.load(exported.onnx).logits(images.permute(0, 2, 3, 1).numpy())  # raw pixels in
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_bare_onnxruntime_on_raw_images_matches_cnnsweep_predict(exported, checkpoint, tmp_path):
    """The file is the whole contract: plain ONNX Runtime (no cnnsweep code), fed decoded PNGs at the
    model's size, gives exactly the probabilities `cnnsweep predict` writes for the same files."""
    import csv

    import onnxruntime as ort
    from PIL import Image

    from cnnsweep.cli.app import app

    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(8, 8)] * 4):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L").save(paths[-1])
    result = CliRunner().invoke(app, ["predict", exported.onnx, *map(str, paths), "-o", str(tmp_path / "p.csv"),
                                      "--top-k", "10"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    session = ort.InferenceSession(exported.onnx, providers=["CPUExecutionProvider"])
    temperature = float(session.get_modelmeta().custom_metadata_map["cnnsweep.temperature"])  # calibration
    for path, row in zip(paths, rows):
        pixels = np.asarray(Image.open(path))[None, :, :, None]  # 1 x H x W x 1 uint8, as decoded
        logits = session.run(["logits"], {"image": pixels})[0][0].astype(np.float64) / temperature
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert int(row["label"]) == int(probs.argmax())
        got = {int(row[f"top{k}_label"]): float(row[f"top{k}_prob"]) for k in range(1, 11)}
        assert got == {c: pytest.approx(float(p), abs=1e-6) for c, p in enumerate(probs)}


def test_a_clahe_model_exports_and_verifies_against_the_whole_training_path(tmp_path):
    # The graph of a CLAHE model reads equalized pixels and the runner equalizes first, so the check must
    # compare it with the training preprocessing in full: against the graph's own part alone (no CLAHE)
    # every real CLAHE model failed export (max |logit diff| ~2 on a GTSRB run).
    cfg = validate_config({**DIGITS, "data": {**DIGITS["data"], "equalize": "clahe", "clahe_grid": 2},
                           "train": {**DIGITS["train"], "epochs": 1}})
    hooks = LocalHooks(output=tmp_path / "run")
    fit(cfg, load_dataset(cfg.data), hooks)
    report = export_checkpoint(hooks.last_checkpoint, tmp_path / "clahe.onnx")
    assert report.verification["ok"] and report.verification["max_abs_diff"] <= 1e-4
    runner = OnnxRunner.load(tmp_path / "clahe.onnx")
    assert "CLAHE" in runner.info.pre_step
    valid = load_dataset(cfg.data).valid
    assert runner.accuracy(valid) == pytest.approx(report.val_acc_checkpoint)  # the served model is the trained one


def test_tampered_onnx_fails_verification(exported, checkpoint, tmp_path):
    proto = onnx.load(exported.onnx)
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    biggest = max(floats, key=lambda t: np.prod(t.dims))  # a conv or linear weight
    weights = onnx.numpy_helper.to_array(biggest).copy()
    weights += np.random.default_rng(0).normal(0, 1.0, weights.shape).astype(weights.dtype)
    biggest.CopyFrom(onnx.numpy_helper.from_array(weights, biggest.name))
    onnx.save(proto, tmp_path / "tampered.onnx")
    lm = load_model_from_checkpoint(checkpoint)
    x = load_dataset(lm.config.data).valid.images[:72].permute(0, 2, 3, 1).numpy()
    report = verify_session(OnnxRunner.load(tmp_path / "tampered.onnx"), pixel_classifier(lm.model, lm.preprocess), x)
    assert not report.ok and report.max_abs_diff > 1e-4
    assert "does not reproduce PyTorch" in report.failure_message()


def test_export_fails_and_removes_file_when_model_mismatches(checkpoint, tmp_path, monkeypatch):
    real = pipeline.export_onnx

    def export_other_weights(model, info, path):  # what a broken exporter would produce
        other = load_model_from_checkpoint(checkpoint).model
        with torch.no_grad():
            next(p for n, p in other.named_parameters() if n.endswith("bias")).add_(5.0)
        return real(other, info, path)

    monkeypatch.setattr(pipeline, "export_onnx", export_other_weights)
    with pytest.raises(ExportError, match="does not reproduce") as err:
        export_checkpoint(checkpoint, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    assert err.value.report is not None and not err.value.report.ok


def test_failed_re_export_keeps_the_verified_file_and_leaves_no_temp(checkpoint, tmp_path):
    export_checkpoint(checkpoint, tmp_path / "m.onnx")
    good = (tmp_path / "m.onnx").read_bytes()
    with pytest.raises(ExportError, match="does not reproduce"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", atol=-1.0)  # no export can pass this check
    assert (tmp_path / "m.onnx").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_failed_int8_step_keeps_the_previous_pair(checkpoint, tmp_path, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"previous fp32")  # stand-ins for an earlier export's pair
    (tmp_path / "m_int8.onnx").write_bytes(b"previous int8")

    def broken_quantizer(*args, **kwargs):
        raise ExportError("int8: the quantizer failed")

    monkeypatch.setattr(pipeline, "quantize_int8", broken_quantizer)
    with pytest.raises(ExportError, match="quantizer failed"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", int8=True)
    assert (tmp_path / "m.onnx").read_bytes() == b"previous fp32"  # not a new fp32 beside the old int8
    assert (tmp_path / "m_int8.onnx").read_bytes() == b"previous int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m_int8.onnx"]


def test_int8_is_quantized_and_reports_accuracy(exported):
    q = exported.int8
    proto = onnx.load(q["onnx"])
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert read_metadata(q["onnx"]).precision == "int8"
    assert 0.3 < q["val_acc_fp32"] <= 1 and 0 <= q["val_acc_int8"] <= 1
    assert abs(q["val_acc_fp32"] - q["val_acc_int8"]) < 0.05  # int8 keeps the model's accuracy
    assert q["num_val"] == 360 and q["num_calibration"] > 0


def test_cli_export_json_and_exit_codes(checkpoint, tmp_path):
    from cnnsweep.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(checkpoint), "--output", str(tmp_path / "m.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["onnx"] == str(tmp_path / "m.onnx") and report["int8"] is None
    missing = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such checkpoint" in missing.output


def test_export_package_does_not_import_ray():
    code = "import sys; sys.modules['ray'] = None; import cnnsweep.export; print('OK')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr[-2000:]


def test_export_best_writes_into_the_sweep_best_folder(checkpoint, tmp_path):
    import shutil

    from cnnsweep.export import export_best

    shutil.copytree(checkpoint, tmp_path / "sweep" / "best")
    report = export_best(tmp_path / "sweep")
    assert report.ok and report.onnx == str(tmp_path / "sweep" / "best" / "model.onnx")
    assert read_metadata(report.onnx).class_names == [str(i) for i in range(10)]


def test_temperature_fitted_on_validation_travels_in_both_files(exported, checkpoint):
    from cnnsweep.engine.calibration import fit_temperature

    c = exported.calibration
    assert read_metadata(exported.onnx).temperature == pytest.approx(c["temperature"])
    assert read_metadata(exported.int8["onnx"]).temperature == pytest.approx(c["temperature"])
    lm = load_model_from_checkpoint(checkpoint)
    valid = load_dataset(lm.config.data).valid
    with torch.inference_mode():
        logits = lm.model.eval()(lm.preprocess(valid.images)).numpy()
    assert c["num_images"] == len(valid.labels)  # the whole (small) split
    assert c["temperature"] == pytest.approx(fit_temperature(logits, valid.labels.numpy()), rel=1e-3)
    assert c["nll_after"] <= c["nll_before"] and exported.to_dict()["calibration"] == c
