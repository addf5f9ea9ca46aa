"""`analyze_target` on a real tiny digits model: metrics.json agrees with an independent recomputation
from the saved predictions; split fallback; every section's files exist."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnnsweep.analysis.run import analyze_target
from cnnsweep.analysis.metrics_file import load_metrics
from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.data import load_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    m = analyze_target(digits_checkpoint, split="test", output=out, class_image_steps=5)
    return m, out


def _saved(out):
    d = np.load(out / "predictions.npz")
    return d["labels"], d["logits"]


def test_split_fallback_is_said_in_one_note(report):
    m, _ = report
    assert m.split == "valid"  # digits has no test split
    assert "no test split in this dataset: analyzing the valid split" in m.notes


def test_summary_agrees_with_recomputation_from_predictions(report):
    m, out = report
    assert json.loads((out / "metrics.json").read_text())["models"] == [r.model_dump() for r in m.models]
    assert load_metrics(out).models == m.models
    y, logits = _saved(out)
    pred = logits.argmax(1)
    s = m.models[0].summary
    assert s.num_images == len(y) == 360
    assert s.accuracy == pytest.approx((pred == y).mean())
    assert s.num_errors == int((pred != y).sum())
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert s.top5_accuracy == pytest.approx(np.mean([y[i] in top5[i] for i in range(len(y))]))
    f1, prec, rec, support = [], [], [], []
    for c in range(10):  # by hand, not scikit-learn
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(1, np.sum(pred == c))
        r = tp / max(1, np.sum(y == c))
        prec.append(p), rec.append(r), support.append(np.sum(y == c))
        f1.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    assert s.precision_macro == pytest.approx(np.mean(prec))
    assert s.recall_macro == pytest.approx(np.mean(rec))
    assert s.f1_macro == pytest.approx(np.mean(f1))
    assert s.f1_weighted == pytest.approx(np.average(f1, weights=support))
    table = m.per_class["table"]
    assert [r["recall"] for r in table] == pytest.approx(rec)
    assert [r["errors"] for r in table] == [int(np.sum((y == c) & (pred != c))) for c in range(10)]


def test_confusion_and_pairs_agree_with_predictions(report):
    m, out = report
    y, logits = _saved(out)
    pred = logits.argmax(1)
    cm = np.array(m.per_class["confusion_counts"])
    expect = np.zeros((10, 10), int)
    np.add.at(expect, (y, pred), 1)
    assert (cm == expect).all()
    off = expect - np.diag(np.diag(expect))
    first = m.per_class["confused_pairs"][0]
    assert first["count"] == off.max() and off[first["true"], first["pred"]] == off.max()


def test_predictions_csv_matches_npz(report):
    _, out = report
    y, logits = _saved(out)
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [int(r["true"]) for r in rows] == y.tolist()
    assert [int(r["pred"]) for r in rows] == logits.argmax(1).tolist()


def test_predictions_are_the_model_on_the_valid_split(report, digits_checkpoint):
    _, out = report
    lm = load_model_from_checkpoint(digits_checkpoint)
    valid = load_dataset(lm.config.data).valid
    import torch

    with torch.no_grad():
        expect = lm.model(lm.preprocess(valid.images)).numpy()
    y, logits = _saved(out)
    assert y.tolist() == valid.labels.tolist()
    np.testing.assert_allclose(logits, expect, atol=1e-4)


def test_every_section_and_file_is_there(report):
    m, out = report
    html = (out / "report.html").read_text()
    for section in ("Summary", "Per-class errors", "Data analysis", "What the CNN sees", "Model card"):
        assert section in html
    files = [m.per_class["figures"]["confusion_counts"], m.per_class["figures"]["confusion_normalized"],
             m.data_analysis["balance"]["figure"], m.data_analysis["image_stats"]["figure"],
             *m.data_analysis["samples"]["figures"], *[g["figure"] for g in m.per_class["galleries"]],
             *[f["path"] for f in m.explain["figures"]]]
    for f in files:
        assert (out / f).stat().st_size > 1000, f
        assert f'src="{f}"' in html
    assert m.per_class["galleries"], "the tiny model makes mistakes, so there are galleries"
    counts = m.data_analysis["balance"]["counts_before"]
    assert sum(counts) == m.data_analysis["num_images"]
    assert m.data_analysis["balance"]["imbalance_ratio_before"] == pytest.approx(max(counts) / min(counts))


def test_a_mirror_averaging_model_is_analyzed_and_exported_as_it_evaluates(tmp_path):
    """`model.tta: hflip` from training to the report and the .onnx file: the saved predictions and the
    exported graph (fp32 and int8) both average the mirror, and every explanation figure is drawn."""
    import torch

    from cnnsweep.export import OnnxRunner
    from cnnsweep.export.pipeline import export_checkpoint
    from cnnsweep.models.tta import single_view
    from tests.analysis.conftest import train_tiny

    ckpt = train_tiny(tmp_path / "run", tta="hflip")
    m = analyze_target(ckpt, split="valid", output=tmp_path / "report", class_image_steps=5)
    lm = load_model_from_checkpoint(ckpt)
    assert lm.model.tta == "hflip"
    valid = load_dataset(lm.config.data).valid
    with torch.no_grad():
        expect = lm.model(lm.preprocess(valid.images))
        with single_view(lm.model):
            one_view = lm.model(lm.preprocess(valid.images))
    _, logits = _saved(tmp_path / "report")
    np.testing.assert_allclose(logits, expect.numpy(), atol=1e-4)
    assert not np.allclose(logits, one_view.numpy(), atol=1e-3)
    for f in m.explain["figures"]:
        assert (tmp_path / "report" / f["path"]).stat().st_size > 1000, f
    assert m.per_class["galleries"]
    report = export_checkpoint(ckpt, tmp_path / "model.onnx", int8=True)
    assert report.verification["ok"]
    nhwc = valid.images[:32].permute(0, 2, 3, 1).numpy()
    got = OnnxRunner.load(tmp_path / "model.onnx").logits(nhwc)
    np.testing.assert_allclose(torch.from_numpy(got).softmax(1), expect[:32].softmax(1), atol=1e-4)
