"""What `cnnsweep export PATH` resolves to: checkpoint, run folder, sweep folder (best/ and --top N)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnsweep.checkpoint import CheckpointError
from cnnsweep.export import resolve_sources


def _ckpt(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint.pt").write_bytes(b"stub")  # resolution never loads it
    return folder / "checkpoint.pt"


def test_checkpoint_file_and_folder(tmp_path):
    f = _ckpt(tmp_path / "ck")
    for given in (f, f.parent):
        [src] = resolve_sources(given)
        assert src.checkpoint == f and src.output == tmp_path / "ck" / "model.onnx"


def test_run_folder_prefers_best_checkpoint_from_result_json(tmp_path):
    run = tmp_path / "run"
    last, best = _ckpt(run / "ray" / "checkpoint_000002"), _ckpt(run / "ray" / "checkpoint_000001")
    (run / "result.json").write_text(json.dumps({"checkpoint": str(last.parent), "best_checkpoint": str(best.parent)}))
    [src] = resolve_sources(run)
    assert src.checkpoint == best and src.output == run / "model.onnx"


def test_sweep_folder_best_and_top_n(tmp_path):
    sweep = tmp_path / "sweep"
    best = _ckpt(sweep / "best")
    a, b, c = (_ckpt(sweep / "train" / f"trial_{t}" / "ck") for t in "abc")
    rows = ["trial_id,val/acc,checkpoint", f"t_b,0.9,{b.parent}", f"t_a,0.8,{a.parent}",
            "t_x,,", f"t_c,0.7,{c.parent.relative_to(sweep)}"]  # best first; t_x died without a checkpoint
    (sweep / "leaderboard.csv").write_text("\n".join(rows) + "\n")
    [src] = resolve_sources(sweep)
    assert src.checkpoint == best and src.output == sweep / "best" / "model.onnx"
    top = resolve_sources(sweep, top=3)
    assert [s.checkpoint for s in top] == [b, a, c]  # relative paths resolve against the sweep folder
    assert [s.output.name for s in top] == ["top1_t_b.onnx", "top2_t_a.onnx", "top3_t_c.onnx"]


@pytest.mark.parametrize("case", ["missing", "top_without_sweep", "empty_run", "no_checkpoint_column"])
def test_bad_sources_are_clear_errors(tmp_path, case):
    if case == "missing":
        path, top, match = tmp_path / "nope", None, "no such"
    elif case == "top_without_sweep":
        path, top, match = _ckpt(tmp_path / "ck").parent, 2, "needs a sweep folder"
    elif case == "empty_run":
        (tmp_path / "run").mkdir()
        path, top, match = tmp_path / "run", None, "no checkpoint.pt"
    else:
        (tmp_path / "leaderboard.csv").write_text("trial_id,val/acc\nt1,0.5\n")
        path, top, match = tmp_path, 1, "no checkpoint column"
    with pytest.raises(CheckpointError, match=match):
        resolve_sources(path, top)


def test_leaderboard_checkpoint_deleted_by_ray_falls_back_to_the_trials_newest(tmp_path):
    """Ray Train keeps `num_to_keep` checkpoints per trial: the one a leaderboard row names may be gone."""
    import os

    from cnnsweep.export.sources import read_leaderboard

    trial = tmp_path / "train" / "trial_ab12"
    for i, name in enumerate(["checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02"]):
        (trial / name).mkdir(parents=True)
        (trial / name / "checkpoint.pt").write_bytes(b"x")
        os.utime(trial / name / "checkpoint.pt", (1000 + i, 1000 + i))
    gone = trial / "checkpoint_2026-01-01_00-00-00"  # deleted by Ray's num_to_keep
    (tmp_path / "leaderboard.csv").write_text(f"rank,trial_id,val/acc,checkpoint\n1,ab12,1.0,{gone}\n")
    (src,) = read_leaderboard(tmp_path, 1)
    assert src.checkpoint == trial / "checkpoint_2026-01-01_00-00-02" / "checkpoint.pt"
