"""`predict` on real GTSRB: CSV shape, agreement with ORT run by hand, files == split, on-the-fly export."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnsweep.data import load_dataset
from cnnsweep.config import DataConfig
from cnnsweep.export import OnnxRunner, export_checkpoint
from cnnsweep.export.ensemble_export import export_ensemble
from cnnsweep.predict import PredictError, csv_columns, load_predictor, predict, resolve_inputs, resolve_model

pytestmark = pytest.mark.slow
SPLIT = "gtsrb_pickle:{root}:valid"


@pytest.fixture(scope="module")
def ensemble_onnx(tiny_gtsrb_sweep, tmp_path_factory):
    return export_ensemble(tiny_gtsrb_sweep, tmp_path_factory.mktemp("e") / "ens.onnx", top=3).onnx


@pytest.fixture(scope="module")
def valid(gtsrb_root):
    return load_dataset(DataConfig(name="gtsrb_pickle", root=str(gtsrb_root))).valid


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_split_predictions_match_onnx_runtime_by_hand(ensemble_onnx, gtsrb_root, valid, tmp_path):
    summary = predict(load_predictor(ensemble_onnx), resolve_inputs([SPLIT.format(root=gtsrb_root)]),
                      tmp_path / "p.csv", batch_size=100, chunk_size=1000)
    rows = _read(tmp_path / "p.csv")
    assert list(rows[0]) == csv_columns(1, with_truth=True) == ["id", "label", "class_name", "prob", "true_label"]
    assert len(rows) == len(valid.labels) == summary.num_images and rows[7]["id"] == "valid/7"
    runner = OnnxRunner.load(ensemble_onnx)
    info = runner.info
    want = runner.split_logits(valid.images[:500]).argmax(1)
    assert [int(r["label"]) for r in rows[:500]] == want.tolist()
    assert [int(r["true_label"]) for r in rows] == valid.labels.tolist()
    assert summary.accuracy == pytest.approx(np.mean([r["label"] == r["true_label"] for r in rows]))
    assert all(rows[i]["class_name"] == info.class_names[int(rows[i]["label"])] for i in range(0, 4000, 397))


def _png(chw: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chw.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def test_image_files_get_the_same_predictions_as_the_split_with_top_k(ensemble_onnx, gtsrb_root, valid, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i:03d}.png").write_bytes(_png(valid.images[i]))
    predictor = load_predictor(ensemble_onnx)
    predict(predictor, resolve_inputs([str(folder)]), tmp_path / "files.csv", top_k=3, batch_size=7)
    predict(predictor, resolve_inputs([SPLIT.format(root=gtsrb_root)]), tmp_path / "split.csv", top_k=3)
    files, split = _read(tmp_path / "files.csv"), _read(tmp_path / "split.csv")[:20]
    assert list(files[0]) == csv_columns(3) and files[3]["id"] == "003.png"
    for f, s in zip(files, split):
        assert f["label"] == s["label"] == f["top1_label"]
        probs = [float(f[f"top{r}_prob"]) for r in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True) and float(f["prob"]) == pytest.approx(float(s["prob"]), abs=1e-5)


def test_a_corrupt_image_names_its_file(ensemble_onnx, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(PredictError, match="bad.png: .*--skip-bad"):
        predict(load_predictor(ensemble_onnx), resolve_inputs([str(tmp_path / "bad.png")]), tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()  # no half-written CSV


def _folder_with_bad_files(valid, folder):
    """5 good PNGs, one corrupt PNG and one that vanishes between listing and reading."""
    folder.mkdir()
    for i in range(5):
        (folder / f"{i:03d}.png").write_bytes(_png(valid.images[i]))
    (folder / "002b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "004b.png").write_bytes(_png(valid.images[0]))
    inputs = resolve_inputs([str(folder)])
    (folder / "004b.png").unlink()
    return inputs


def test_skip_bad_leaves_out_bad_images_and_names_them(ensemble_onnx, valid, tmp_path):
    inputs = _folder_with_bad_files(valid, tmp_path / "imgs")
    predictor = load_predictor(ensemble_onnx)
    with pytest.raises(PredictError, match="002b.png: not a PNG"):  # without it, the first bad image stops the run
        predict(predictor, inputs, tmp_path / "strict.csv", chunk_size=3)
    summary = predict(predictor, inputs, tmp_path / "p.csv", chunk_size=3, batch_size=2, skip_bad=True)
    rows = _read(tmp_path / "p.csv")
    assert [r["id"] for r in rows] == [f"{i:03d}.png" for i in range(5)] and summary.num_images == 5
    assert [s["id"] for s in summary.skipped] == ["002b.png", "004b.png"]
    assert "cannot read" in summary.skipped[1]["error"] and summary.to_dict()["num_skipped"] == 2
    # the good images get the predictions they get alone
    predict(predictor, resolve_inputs([str(tmp_path / "imgs" / f"{i:03d}.png") for i in range(5)]), tmp_path / "g.csv")
    assert [r["label"] for r in rows] == [r["label"] for r in _read(tmp_path / "g.csv")]


def test_a_chunk_of_only_bad_images_gives_no_rows(ensemble_onnx, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"junk")
    summary = predict(load_predictor(ensemble_onnx), resolve_inputs([str(tmp_path / "bad.png")]), tmp_path / "p.csv",
                      skip_bad=True)
    assert summary.num_images == 0 and len(summary.skipped) == 1 and _read(tmp_path / "p.csv") == []


def test_checkpoint_is_exported_on_the_fly_and_a_sweep_best_model_is_used_as_is(tiny_gtsrb_sweep, tmp_path):
    ckpt = next(tiny_gtsrb_sweep.glob("t0_rgb/checkpoints/epoch_*/checkpoint.pt"))
    onnx_path, source = resolve_model(ckpt, tmp_path / "work")
    assert source == str(ckpt) and onnx_path.parent == tmp_path / "work" and onnx_path.is_file()
    best = tiny_gtsrb_sweep / "best"
    export_checkpoint(ckpt, best / "model.onnx")
    try:
        assert resolve_model(tiny_gtsrb_sweep, tmp_path / "w2") == (best / "model.onnx", None)
    finally:
        (best / "model.onnx").unlink()
        best.rmdir()
    with pytest.raises(PredictError, match="no such model"):
        resolve_model(tmp_path / "nope.onnx", tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PredictError, match="cannot load it"):
        load_predictor(tmp_path / "junk.onnx")
