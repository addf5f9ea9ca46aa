"""Ray Tune sweeps: resources per trial, --resume after SIGKILL, and a tiny end-to-end sweep whose last trial
is stopped early (what it writes, and that nothing it reserved stays reserved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnsweep.config import validate_config
from cnnsweep.sweep.space import load_search

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("cnnsweep"))
TINY = {"name": "tiny", "data": {"name": "digits"},
        "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1}, "sched": {"name": "none"},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 64, "amp": "bf16"}, "scaling": {"num_workers": 1}}


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- resources (no Ray started)


def _plan_inputs(scaling: dict, space: dict | None = None):
    cfg = validate_config(TINY | {"scaling": scaling,
                                  "search": {"baseline_first": False,
                                             "space": space or {"train.lr": {"uniform": [1e-3, 1e-2]}}}})
    return cfg, load_search(cfg)


def test_trial_footprint_is_workers_times_per_worker_resources():
    from cnnsweep.distributed.tune import trial_footprint

    cfg, search = _plan_inputs({"num_workers": 2, "cpus_per_worker": 1.5})
    assert trial_footprint(cfg, search) == {"CPU": 3.0, "GPU": 0.0}  # the trial driver itself reserves 0
    cfg, search = _plan_inputs({"num_workers": 2, "use_gpu": True, "gpus_per_worker": 0.25})
    assert trial_footprint(cfg, search) == {"CPU": 2.0, "GPU": 0.5}
    # a searched worker count: the worst case decides
    cfg, search = _plan_inputs({"num_workers": 1}, {"scaling.num_workers": {"choice": [1, 2, 4]}})
    assert trial_footprint(cfg, search)["CPU"] == 4.0


def test_max_concurrent_auto_fits_the_cluster():
    from cnnsweep.config import ConfigError
    from cnnsweep.distributed.tune import derive_max_concurrent

    assert derive_max_concurrent("auto", {"CPU": 4.0}, {"CPU": 2.0, "GPU": 0.0}, 10) == 2
    assert derive_max_concurrent("auto", {"CPU": 2.0}, {"CPU": 2.0, "GPU": 0.0}, 10) == 1
    # four trials of 2 workers x 0.125 GPU share one GPU when the CPUs allow it
    assert derive_max_concurrent("auto", {"CPU": 16.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 0.25}, 10) == 4
    assert derive_max_concurrent("auto", {"CPU": 64.0}, {"CPU": 1.0, "GPU": 0.0}, 3) == 3  # no more than trials
    assert derive_max_concurrent(5, {"CPU": 1.0}, {"CPU": 2.0, "GPU": 0.0}, 10) == 5  # explicit wins
    with pytest.raises(ConfigError, match="one trial needs"):
        derive_max_concurrent("auto", {"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}, 4)  # no GPU at all


# ---------------------------------------------------------------------------- --resume after SIGKILL


def _start_cli(args: list[str], log: Path) -> subprocess.Popen:
    """`cnnsweep tune` in its own process group, with its own private Ray instance."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # save the experiment state every second (default: >= 10 s)
    return subprocess.Popen([CLI, "tune", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log, "w"))


def _group_members(pgid: int) -> list[int]:
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid:
                members.append(int(pid))
        except ProcessLookupError:
            pass
    return members


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the CLI and every Ray process it started (gcs, raylet, workers share its process group),
    and wait until all are gone. Only this group: the test session's own Ray instance lives in another."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is asynchronous: a dying process may still finish a write


def _rows(trial_dir: Path) -> list[dict]:
    """The rows Tune recorded for a trial (its result.json), in order."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _set_status(out: Path, trial_id: str, status: str) -> None:
    """Edit the stored experiment state, as a kill at an unlucky moment would have left it."""
    path = sorted((out / "tune").glob("experiment_state-*.json"))[-1]  # the newest: what --resume reads
    state = json.loads(path.read_text())
    for pair in state["trial_data"]:
        trial = json.loads(pair[0])
        if trial["trial_id"] == trial_id:
            pair[0] = json.dumps(trial | {"status": status})
    path.write_text(json.dumps(state))


def _resume(sweep: Path, out: Path, log: Path) -> tuple[dict, pd.DataFrame]:
    """`cnnsweep tune --resume` to the end: its summary and the leaderboard it wrote."""
    proc = _start_cli([str(sweep), "--output", str(out), "--resume", "--json"], log)
    try:
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        _kill_group(proc)
    return _last_json(log.with_suffix(".out").read_text()), pd.read_csv(out / "leaderboard.csv")


def _synced_statuses(out: Path) -> dict[str, str]:
    """Trial statuses in the experiment state as stored in --output: what --resume will find."""
    files = sorted((out / "tune").glob("experiment_state-*.json"))  # one per (re)start, named by its time
    try:
        trials = [json.loads(t[0]) for t in json.loads(files[-1].read_text())["trial_data"]] if files else []
    except (json.JSONDecodeError, OSError):  # caught mid-copy
        return {}
    return {t["trial_id"]: t["status"] for t in trials}


def _checkpoints(out: Path, trial_id: str) -> list[Path]:
    return sorted(c for c in (out / "train" / f"trial_{trial_id}").glob("checkpoint_20*") if c.is_dir())


def _latest_checkpoint_metrics(out: Path, trial_id: str) -> dict:
    """What the epoch of the latest checkpoint Ray Train registered for this trial reported ({}: none yet).
    A checkpoint folder still being written does not count: Train resumes from the registered one."""
    snapshot = out / "train" / f"trial_{trial_id}" / "checkpoint_manager_snapshot.json"
    try:
        return dict(json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError):  # absent, or being replaced right now
        return {}


def _newest_epoch(out: Path, trial_id: str) -> int:
    return int(_latest_checkpoint_metrics(out, trial_id).get("epoch", -1))


def _wait_for(predicate, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"cnnsweep tune exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")


@pytest.mark.ray
@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials_and_continues_the_interrupted_one(tmp_path):
    epochs = 8  # ~1 s each: long enough to catch the second trial midway
    sweep = tmp_path / "sweep.yaml"
    # Two trials, one at a time: the first finishes, the second is killed midway. No export or analysis at
    # the end (three CLI runs would do them three times; test_a_sweep_whose_last_trial... covers them).
    sweep.write_text(json.dumps(TINY | {"train": TINY["train"] | {"epochs": epochs}, "search": {
        "algorithm": "grid", "max_concurrent": 1, "scheduler": {"name": "fifo"}, "export": False, "analyze": False,
        "space": {"model.width": {"choice": [4, 6]}}}}))
    out = tmp_path / "sweep"
    log = tmp_path / "first.log"
    proc = _start_cli([str(sweep), "--output", str(out)], log)
    registered: dict = {}  # what the midway trial's latest registered checkpoint reported, at the look

    try:
        def one_done_one_midway() -> bool:
            states = _synced_statuses(out)
            done = [t for t, s in states.items() if s == "TERMINATED"]
            running = [t for t, s in states.items() if s == "RUNNING" and 0 <= _newest_epoch(out, t) < epochs - 2]
            if len(done) == 1 and len(running) == 1:
                registered.update(_latest_checkpoint_metrics(out, running[0]))
            return len(done) == 1 and len(running) == 1 and "epoch" in registered

        _wait_for(one_done_one_midway, 240, proc, log)
        assert os.killpg(proc.pid, 0) is None  # still alive: the kill below interrupts a running sweep
    finally:
        _kill_group(proc)
    states = _synced_statuses(out)
    done = next(t for t, s in states.items() if s == "TERMINATED")
    midway = next(t for t, s in states.items() if s == "RUNNING")
    done_rows = _rows(out / "tune" / f"trial_{done}")
    done_checkpoints = _checkpoints(out, done)
    assert len(done_rows) == epochs and done_checkpoints

    summary, board = _resume(sweep, out, tmp_path / "resume.log")
    assert summary["trials"] == {"finished": 2, "stopped_early": 0, "errored": 0, "total": 2}, board
    # the finished trial did not run again: same Tune rows, same checkpoints
    assert _rows(out / "tune" / f"trial_{done}") == done_rows and _checkpoints(out, done) == done_checkpoints
    # The interrupted trial went on from its last checkpoint, not from scratch: Tune restarts it with an
    # empty history, the trial replays the epochs its checkpoint records (the very rows reported before
    # the kill: the same per-epoch seconds, which a retrained epoch would not match), then trains the rest.
    resumed = _rows(out / "tune" / f"trial_{midway}")
    assert [r["epoch"] for r in resumed] == list(range(epochs)), resumed
    assert resumed[registered["epoch"]]["train/seconds"] == registered["train/seconds"], (registered, resumed)
    assert all(r["epochs_done"] == r["epoch"] + 1 for r in resumed)
    assert list(board["epochs"]) == [epochs] * 2 and board["checkpoint"].map(lambda c: Path(c).is_dir()).all()

    # Tune may find a trial RUNNING whose Train run had finished every epoch before the kill reached its
    # workers (they are not in the CLI's process group). Force that case: the trial trains nothing more,
    # and still counts as finished with its full history and best checkpoint.
    _set_status(out, midway, "RUNNING")
    midway_checkpoints = _checkpoints(out, midway)
    summary, board2 = _resume(sweep, out, tmp_path / "resume2.log")
    assert summary["trials"] == {"finished": 2, "stopped_early": 0, "errored": 0, "total": 2}, board2
    assert _checkpoints(out, midway) == midway_checkpoints  # nothing retrained
    assert [r["train/seconds"] for r in _rows(out / "tune" / f"trial_{midway}")] == [
        r["train/seconds"] for r in resumed]
    assert board2.set_index("trial_id")["checkpoint"].to_dict() == board.set_index("trial_id")["checkpoint"].to_dict()


# ---------------------------------------------------------------------------- nothing stays reserved


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_whose_last_trial_is_stopped_early_analyzes_and_leaves_nothing_reserved(ray_session, tmp_path):
    """One trial at a time; the last one (lr 1e-7 learns nothing) is stopped by ASHA at its first rung, so
    its Train controller dies with the trial and only Ray's PlacementGroupCleaner can release its group.
    The analysis then needs a free CPU: before the cleaner could query this instance's state API, it
    waited forever."""
    from ray.util.state import list_actors

    from cnnsweep.cli import app
    from cnnsweep.distributed.tune.resources import held_placement_groups

    held_before = held_placement_groups()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps(TINY | {"search": {
        "algorithm": "grid", "max_concurrent": 1, "analyze": True,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "space": {"train.lr": {"choice": [3.0e-3, 1.0e-7]}}}}))
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["tune", str(sweep), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.stdout)
    assert summary["trials"]["stopped_early"] == 1 and summary["trials"]["finished"] == 1, summary["trials"]
    assert summary["analysis"] and Path(summary["analysis"]).is_file(), summary["notes"]
    assert not [n for n in summary["notes"] if "placement group" in n], summary["notes"]  # Ray's cleaner did it
    assert held_placement_groups() - held_before == set()
    cleaners = list_actors(filters=[("class_name", "=", "PlacementGroupCleaner"), ("state", "=", "ALIVE")])
    assert cleaners == [], cleaners  # one per trial used to stay alive (~200 MiB each)
    _check_sweep_outputs(out, summary)


def _check_sweep_outputs(out: Path, summary: dict) -> None:
    """What a sweep writes: leaderboard, best checkpoint and its verified export, history, ablation,
    curves, TensorBoard events per trial, at most num_to_keep checkpoints per trial."""
    from cnnsweep.checkpoint import load_model_from_checkpoint

    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 2 and board["val/acc"].is_monotonic_decreasing
    best = summary["best"]
    assert best["trial_id"] == board.iloc[0]["trial_id"] and best["val_acc"] == pytest.approx(board.iloc[0]["val/acc"])
    assert best["val_acc"] > 0.3 and best["config"]["train"]["lr"] == pytest.approx(3e-3)  # 10 classes: chance 0.1
    loaded = load_model_from_checkpoint(best["checkpoint"])  # <output>/best is a usable checkpoint
    assert Path(best["checkpoint"]) == out / "best" and len(loaded.class_names) == 10
    assert best["onnx"] == str(out / "best" / "model.onnx") and best["onnx_verification"]["ok"]
    assert set(pd.read_csv(out / "history.csv")["trial_id"]) == set(board["trial_id"])
    assert set(pd.read_csv(out / "ablation.csv")["factor"]) == {"train.lr"}
    assert (out / "curves" / "train.lr.png").stat().st_size > 1000
    assert len(list((out / "tune").glob("trial_*/events.out.tfevents.*"))) == 2  # TensorBoard, per trial
    for trial_dir in (out / "train").iterdir():  # num_to_keep: at most 2 checkpoints per trial
        assert len([c for c in trial_dir.glob("checkpoint_*") if c.is_dir()]) <= 2
