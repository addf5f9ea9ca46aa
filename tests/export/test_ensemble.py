"""Top-K ensembles: one ONNX graph, members' own preprocessing, verified against the PyTorch ensemble."""

from __future__ import annotations

import csv
from pathlib import Path
import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.data import load_dataset
from cnnsweep.export import ExportError, OnnxRunner, read_metadata
from cnnsweep.export.ensemble import EnsembleError, Luma, MemberBranch, Ensemble, plan_shared
from cnnsweep.export.ensemble_export import export_ensemble, softmax, verify_ensemble
from cnnsweep.export.onnx_export import export_onnx
from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.color import luma_uint8


def _pre(**kw) -> Preprocess:
    base = dict(source_size=(32, 32), source_channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    base.update(kw)
    if kw.get("grayscale"):
        base.update(mean=(0.4,), std=(0.2,))
    return Preprocess(**base)


# ------------------------------------------------------------------------------ planning (fast)

def test_in_graph_luma_equals_the_training_luma_on_every_pixel():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    x[0, :, 0, :256 // 32] = 0  # plus the corners of the cube
    x[1] = 255
    got = Luma()(x.float() / 255) * 255
    assert torch.equal(got.round().to(torch.uint8), luma_uint8(x))
    assert float((got - got.round()).abs().max()) < 1e-4


def test_shared_path_holds_what_all_members_share():
    shared, to_gray = plan_shared([_pre(grayscale=True), _pre(grayscale=True)])
    assert shared.grayscale and shared.in_channels == 1 and to_gray == [False, False]
    assert not shared.standardize and shared.mean == (0.0,) and shared.std == (1.0,)
    shared, to_gray = plan_shared([_pre(), _pre(grayscale=True), _pre(equalize="none")])
    assert not shared.grayscale and shared.in_channels == 3 and to_gray == [False, True, False]
    shared, _ = plan_shared([_pre(equalize="clahe"), _pre(equalize="clahe")])
    assert shared.equalize == "clahe"  # shared: the runner's CLAHE pre-step runs once for all


@pytest.mark.parametrize("members, words", [
    ([_pre(equalize="clahe"), _pre()], "equalization must be the same"),
    ([_pre(equalize="global"), _pre(equalize="global", clahe_clip=3.0)], "equalization must be the same"),
    ([_pre(equalize="global"), _pre(equalize="global", grayscale=True)], "cannot share an equalization"),
    ([_pre(resize_to=48), _pre()], "same size"),
    ([_pre(resize_to=48), _pre(resize_to=48, grayscale=True)], "cannot share a resize"),
    ([], "at least one member"),
])
def test_members_that_cannot_share_a_graph_are_refused_clearly(members, words):
    with pytest.raises(EnsembleError, match=words) as info:
        plan_shared(members)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ real members (slow)

pytest_slow = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tiny_gtsrb_sweep):
    return export_ensemble(tiny_gtsrb_sweep, top=3)


def _members(sweep, k=3):
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))[:k]
    return rows, [load_model_from_checkpoint(r["checkpoint"]) for r in rows]


@pytest_slow
def test_one_file_verified_at_three_batch_sizes(exported):
    v = exported.verification
    assert v["ok"] and v["atol"] == 1e-5 and [b["batch_size"] for b in v["batches"]] == [1, 7, 64]
    assert v["top1_agreement"] == 1.0 and v["max_abs_diff"] <= 1e-5
    proto = onnx.load(exported.onnx)
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    # one self-contained file: nothing beside it but other .onnx exports (other tests share this sweep)
    folder = __import__("pathlib").Path(exported.onnx).parent
    assert exported.onnx.endswith("ensemble_top3.onnx") and not [p for p in folder.iterdir() if p.suffix != ".onnx"]


@pytest_slow
def test_onnx_probabilities_are_the_mean_of_each_members_own_pipeline(exported, tiny_gtsrb_sweep):
    rows, members = _members(tiny_gtsrb_sweep)
    assert sum(lm.preprocess.grayscale for lm in members) == 1  # the mix under test: gray + colour
    images = load_dataset(members[0].config.data).valid.images[100:113]  # 13: not a verified batch size
    with torch.inference_mode():
        want = np.mean([torch.softmax(lm.model(lm.preprocess(images)), 1).numpy() for lm in members], axis=0)
    got = softmax(OnnxRunner.load(exported.onnx).split_logits(images))  # raw pixels into the graph
    assert np.abs(got - want).max() <= 1e-5 and (got.argmax(1) == want.argmax(1)).all()


@pytest_slow
def test_metadata_lists_members_and_the_measured_ensemble_accuracy(exported, tiny_gtsrb_sweep):
    rows, members = _members(tiny_gtsrb_sweep)
    info = read_metadata(exported.onnx)
    ens = info.ensemble
    assert [m["trial_id"] for m in ens["members"]] == [r["trial_id"] for r in rows]
    assert [m["metrics"]["val/acc"] for m in ens["members"]] == pytest.approx([float(r["val/acc"]) for r in rows])
    assert ens["members"][1]["config"]["model.width"] == 6 and "data.grayscale" in ens["members"][0]["config"]
    valid = load_dataset(members[0].config.data).valid
    with torch.inference_mode():
        probs = np.mean([torch.softmax(lm.model(lm.preprocess(valid.images)), 1).numpy() for lm in members], axis=0)
    torch_acc = float((probs.argmax(1) == valid.labels.numpy()).mean())
    assert info.metrics["val/num_images"] == len(valid.labels) == 300
    assert abs(info.metrics["val/acc"] - torch_acc) <= 1 / 300  # ORT vs PyTorch: at most one tie breaks apart
    assert exported.to_dict()["ensemble"]["metrics"] == info.metrics


class _ChannelMean(torch.nn.Module):
    """Plain channel mean instead of BT.601 luma: close, but not the pixels the gray member trained on."""

    def forward(self, x):
        return x.mean(dim=1, keepdim=True)


@pytest_slow
def test_a_branch_with_the_wrong_grayscale_fails_verification(tiny_gtsrb_sweep, tmp_path):
    """The check can fail: the same graph with the gray member's luma swapped for a channel mean."""
    from cnnsweep.export.metadata import OnnxModelInfo

    _, members = _members(tiny_gtsrb_sweep)
    shared, to_gray = plan_shared([lm.preprocess for lm in members])
    branches = [MemberBranch(lm.model, lm.preprocess, g) for lm, g in zip(members, to_gray)]
    for b, g in zip(branches, to_gray):
        if g:
            b.luma = _ChannelMean()
    path = export_onnx(Ensemble(branches).eval(), OnnxModelInfo(members[0].class_names, shared), tmp_path / "bad.onnx")
    images = load_dataset(members[0].config.data).valid.images[:72]
    report = verify_ensemble(OnnxRunner.load(path), members, images)
    assert not report.ok and report.max_abs_diff > 1e-5


@pytest_slow
def test_cli_export_ensemble_json_and_bad_input(tiny_gtsrb_sweep, tmp_path):
    from cnnsweep.cli import app

    runner = CliRunner()
    out = tmp_path / "ens.onnx"
    res = runner.invoke(app, ["export", str(tiny_gtsrb_sweep), "--top", "2", "--ensemble", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["onnx"] == str(out) and len(report["ensemble"]["members"]) == 2
    res = runner.invoke(app, ["export", str(tiny_gtsrb_sweep), "--ensemble"])
    assert res.exit_code == 2 and "--ensemble needs --top K" in res.output
    res = runner.invoke(app, ["export", str(tmp_path), "--top", "2", "--ensemble"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "Traceback" not in res.output


@pytest_slow
def test_failed_ensemble_re_export_keeps_the_previous_file_and_leaves_no_temp(tiny_gtsrb_sweep, tmp_path):
    target = tmp_path / "ensemble.onnx"
    target.write_bytes(b"the previous, verified ensemble")
    with pytest.raises(ExportError, match="does not reproduce"):
        export_ensemble(tiny_gtsrb_sweep, target, top=2, atol=-1.0)  # no export can pass this check
    assert target.read_bytes() == b"the previous, verified ensemble"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble.onnx"]


def test_members_whose_preprocessing_cannot_join_the_best_are_left_out_with_a_note(monkeypatch):
    from cnnsweep.export import ensemble_export
    from cnnsweep.export.sources import ExportSource

    def member(equalize: str):
        pre = Preprocess(source_size=(8, 8), source_channels=3, resize_to=8, equalize=equalize, mean=(0.5,) * 3,
                         std=(0.2,) * 3)
        return type("Loaded", (), {"preprocess": pre, "class_names": ["a", "b"]})()

    loaded = {"t1": member("none"), "t2": member("global"), "t3": member("none"), "t4": member("none")}
    monkeypatch.setattr(ensemble_export, "load_model_from_checkpoint", lambda path: loaded[str(path)])
    sources = [ExportSource(Path(t), Path(f"{t}.onnx"), f"top{i} ({t})", t) for i, t in enumerate(loaded, 1)]
    chosen, members, notes = ensemble_export.choose_members(sources, top=3)
    assert [s.trial_id for s in chosen] == ["t1", "t3", "t4"]
    assert len(notes) == 1 and notes[0].startswith("top2 (t2) left out") and "equalization" in notes[0]
    chosen, _, notes = ensemble_export.choose_members(sources[:2], top=3)
    assert [s.trial_id for s in chosen] == ["t1"] and "1 of the 3 members" in notes[-1]
