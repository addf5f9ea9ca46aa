"""`analyze_target` on a sweep folder: the top-K trials, the ablation comparison and the cross-trial error
atlas, checked against an independent recomputation from the saved per-trial predictions.

The sweep folder is written by the sweep's own writers (cnnsweep.distributed.tune.results.summarize_sweep /
save_summary, which call cnnsweep.sweep.report.write_reports) from three real tiny trainings on digits with
the plain engine, laid out as Ray leaves them (train/trial_<id>/.../checkpoint.pt, history rows carrying
`checkpoint_path`, trial ids in Ray's "<5 hex>_<index>" form), so no Ray cluster is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnsweep import metrics as M
from cnnsweep.analysis.run import analyze_target
from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.config import apply_overrides, config_to_dict, save_config, validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.sweep.report import TrialRecord
from cnnsweep.sweep.space import load_search

pytestmark = pytest.mark.slow

SPACE = {"model.width": {"choice": [4, 8]}, "train.lr": {"choice": [3e-3, 1e-2]}}
TRIALS = {"12345_00000": {"model.width": 8, "train.lr": 3e-3},
          "a1b2c_00001": {"model.width": 4, "train.lr": 3e-3},
          "a1b2c_00002": {"model.width": 8, "train.lr": 1e-2}}
TOP = 2
# 3 epochs of a tiny CNN on 1,437 digits: about a second per trial on one core
BASE = {"name": "digits-sweep", "data": {"name": "digits", "val_fraction": 0.2},
        "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
        "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "amp": "off"}}


def _train_trial(base: dict, trial_id: str, overrides: dict, dataset, sweep: Path) -> TrialRecord:
    cfg = validate_config(apply_overrides(base, overrides))
    run = sweep / "train" / f"trial_{trial_id}"
    result = fit(cfg, dataset, LocalHooks(output=run))
    history = []
    for row in result.history:
        epoch = int(row[M.EPOCH])
        ckpt = run / "checkpoints" / f"epoch_{epoch:04d}"
        history.append({k: v for k, v in row.items() if k in M.REPORT_KEYS}
                       | {M.EPOCHS_DONE: epoch + 1, M.CHECKPOINT_PATH: str(ckpt)})
    return TrialRecord(trial_id, "finished", overrides, "", history, params=dict(overrides))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    tune = pytest.importorskip("cnnsweep.distributed.tune.results")  # imports ray (no cluster is started)
    from cnnsweep.distributed.tune.tuner import SweepPlan

    sweep = tmp_path_factory.mktemp("sweep")
    cfg = validate_config(BASE | {"search": {"space": SPACE, "analyze": False}})
    base = config_to_dict(cfg)
    dataset = load_dataset(cfg.data)
    records = [_train_trial(base, tid, o, dataset, sweep) for tid, o in TRIALS.items()]
    save_config(cfg, sweep / "sweep.yaml")
    plan = SweepPlan(cfg, load_search(cfg), str(sweep), 1)
    tune.save_summary(plan, tune.summarize_sweep(plan, records, sweep), sweep)
    return sweep


@pytest.fixture(scope="module")
def report(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-report")
    m = analyze_target(sweep_dir, split="valid", top=TOP, output=out, explain=False)
    return m, out


def _leaderboard_ids(sweep: Path) -> list[str]:
    import csv

    with open(sweep / "leaderboard.csv", newline="") as f:
        return [r["trial_id"] for r in csv.DictReader(f)]


def _saved(out: Path, rank: int):
    d = np.load(out / f"predictions_top{rank}.npz")
    return d["labels"], d["logits"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_layout_is_the_sweeps(sweep_dir):
    for name in ("leaderboard.csv", "history.csv", "ablation.csv", "summary.json", "sweep.yaml", "best"):
        assert (sweep_dir / name).exists(), name
    assert sorted(_leaderboard_ids(sweep_dir)) == sorted(TRIALS)
    assert json.loads((sweep_dir / "summary.json").read_text())["best"]["trial_id"] == _leaderboard_ids(sweep_dir)[0]


def test_models_are_the_top_k_of_the_leaderboard(report, sweep_dir):
    m, _ = report
    ids = _leaderboard_ids(sweep_dir)
    assert m.target.kind == "sweep"
    assert [r.trial_id for r in m.models] == ids[:TOP]
    assert [r.name for r in m.models] == [f"top{i} ({t})" for i, t in enumerate(ids[:TOP], start=1)]


def test_saved_predictions_are_each_trials_checkpoint(report, sweep_dir):
    m, out = report
    import torch

    valid = load_dataset(validate_config(BASE).data).valid
    for rank, row in enumerate(m.models, start=1):
        lm = load_model_from_checkpoint(row.source)
        with torch.no_grad():
            logits = lm.model(lm.preprocess(valid.images)).numpy()
        labels, saved = _saved(out, rank)
        np.testing.assert_array_equal(labels, valid.labels.numpy())
        np.testing.assert_allclose(saved, logits, rtol=1e-4, atol=1e-4)
        assert row.source.startswith(str(sweep_dir / "train" / f"trial_{row.trial_id}"))


def _as_value(x):
    """A factor's value as the figure labels it ("3.0e-3" for 0.003): compared as a number where it is one."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def test_ablation_covers_every_factor_and_trial(report, sweep_dir):
    import pandas as pd

    m, out = report
    history = pd.read_csv(sweep_dir / "history.csv", dtype={"trial_id": str})
    ab = m.ablation
    assert ab is not None
    assert set(ab["accuracy_per_trial"]) == set(TRIALS)  # every trial matched between leaderboard and preds
    assert {f["factor"] for f in ab["factors"]} == set(SPACE)
    for f in ab["factors"]:
        assert (out / f["figure"]).is_file()
        values = {v["value"]: v for v in f["values"]}
        assert {_as_value(v) for v in values} == {_as_value(c) for c in SPACE[f["factor"]]["choice"]}
        for v in values.values():
            expect = [tid for tid, o in TRIALS.items() if _as_value(o[f["factor"]]) == _as_value(v["value"])]
            assert sorted(v["trials"]) == sorted(expect)
            accs = [ab["accuracy_per_trial"][t] for t in expect]
            assert v["accuracy_mean"] == pytest.approx(np.mean(accs))
            hist = history[history["trial_id"].isin(expect)]  # the curves come from the sweep's history
            assert v["curves"][M.VAL_ACC] == pytest.approx(hist.groupby("epoch")[M.VAL_ACC].mean().tolist(), abs=1e-6)
            assert len(v["curves"][M.TRAIN_LOSS]) == BASE["train"]["epochs"]
    for rank, row in enumerate(m.models, start=1):
        labels, logits = _saved(out, rank)
        assert ab["accuracy_per_trial"][row.trial_id] == pytest.approx((logits.argmax(1) == labels).mean())


def test_atlas_agrees_with_the_saved_predictions(report):
    m, out = report
    atlas = m.atlas
    saved = [_saved(out, r) for r in range(1, TOP + 1)]
    labels = saved[0][0]
    ensemble = np.mean([_softmax(z) for _, z in saved], axis=0).argmax(1)
    assert atlas["ensemble_accuracy"] == pytest.approx((ensemble == labels).mean())
    wrong = np.stack([z.argmax(1) != labels for _, z in saved])
    names = [r.name for r in m.models]
    assert atlas["errors_per_model"] == {n: int(w.sum()) for n, w in zip(names, wrong)}
    assert atlas["shared_by_all"] == int(wrong.all(0).sum())
    assert atlas["wrong_by_any"] == int(wrong.any(0).sum())
    unique = {n: int((w & (wrong.sum(0) == 1)).sum()) for n, w in zip(names, wrong)}
    assert atlas["unique_per_model"] == unique
    # consistency: each wrong image is counted once by how many models miss it
    by = {int(k): v for k, v in atlas["wrong_by_count"].items()}
    assert sum(by.values()) == atlas["wrong_by_any"]
    assert by[TOP] == atlas["shared_by_all"] and by[1] == sum(unique.values())
    assert sum(k * v for k, v in by.items()) == sum(atlas["errors_per_model"].values())
    assert (out / atlas["figure"]).is_file()


def test_page_and_metrics_json_have_the_sweep_sections(report):
    m, out = report
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["ablation"]["factors"] and on_disk["atlas"]["ensemble_accuracy"] == m.atlas["ensemble_accuracy"]
    page = (out / "report.html").read_text()
    assert '<section id="ablation">' in page and '<section id="atlas">' in page
    for f in m.ablation["factors"]:
        assert f["figure"] in page
    assert m.atlas["figure"] in page
