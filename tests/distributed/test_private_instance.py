"""The private local Ray instance (cnnsweep.distributed.cluster): its state API is its own, so another
Ray instance started on the same machine cannot make Ray Train's PlacementGroupCleaner remove a live
run's workers, and it listens where docs/design.md says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


BIN = Path(sys.executable).parent
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # what `ray.init()` / `serve run` connect to


@pytest.fixture
def current_cluster_restored():
    """`ray start` records itself as the machine's current cluster; put back what was there, so that later
    commands (`serve run`, `ray.init()`) do not try to join the instance this test stopped."""
    before = CURRENT_CLUSTER.read_bytes() if CURRENT_CLUSTER.is_file() else None
    yield
    if before is None:
        CURRENT_CLUSTER.unlink(missing_ok=True)
    else:
        CURRENT_CLUSTER.write_bytes(before)


def _train_until(folder: str) -> None:
    """A worker that records its process and lives until told to stop (a restarted worker adds a line)."""
    import ray.train

    with open(os.path.join(folder, "pids"), "a") as f:
        f.write(f"{os.getpid()}\n")
    while not os.path.exists(os.path.join(folder, "stop")):
        time.sleep(0.2)
    ray.train.report({"done": 1})


def _start_other_instance(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head` with a dashboard, in Ray's default temp dir and with the user's own token
    (~/.ray/auth_token), as from another shell: it becomes the machine's newest cluster, which Ray's
    state API falls back to when nothing says otherwise, and it accepts this user's calls."""
    from cnnsweep.distributed.cluster import free_loopback_port

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    gcs, dash = free_loopback_port(), free_loopback_port()
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=1",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats",
                             "--block"], env=env, start_new_session=True,
                            stdout=open(tmp_path / "other.log", "w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{dash}"


def _descendants(pid: int) -> set[int]:
    """Every process started under `pid` (Ray's gcs, raylet, dashboard, workers), by the parent links."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stop_other_instance(proc: subprocess.Popen) -> None:
    """Exactly the processes of that instance: never `ray stop`, which would end every Ray instance on the
    machine, this test session's included, and nothing matched by name, which could be another's."""
    members = _descendants(proc.pid) | {proc.pid}
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the other Ray instance exited"
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.5)
    pytest.fail(f"the other Ray instance's dashboard never answered at {url}")


@pytest.mark.ray
@pytest.mark.slow
def test_a_training_keeps_its_workers_while_another_ray_instance_starts(ray_session, current_cluster_restored,
                                                                       tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    folder = str(tmp_path)
    trainer = TorchTrainer(lambda: _train_until(folder), scaling_config=ScalingConfig(num_workers=2),
                           run_config=RunConfig(name="isolation", storage_path=str(tmp_path / "runs")))
    outcome: dict = {}
    fit = threading.Thread(target=lambda: outcome.update(result=_fit(trainer)))
    fit.start()
    time.sleep(15)  # the controller, its cleaner and both workers are up
    other, dashboard = _start_other_instance(tmp_path)
    try:
        _wait_http(dashboard, other)
        time.sleep(8)  # the cleaner looks at its controller every 1 s
    finally:
        (tmp_path / "stop").touch()
        fit.join(timeout=120)
        _stop_other_instance(other)
    result = outcome.get("result")
    assert isinstance(result, dict), result
    assert result["error"] is None, result["error"]
    assert len((tmp_path / "pids").read_text().split()) == 2  # the same two workers, never restarted


def _fit(trainer) -> dict:
    try:
        result = trainer.fit()
        return {"error": result.error, "metrics": result.metrics}
    except Exception as err:  # noqa: BLE001 - the test reports it
        return {"error": repr(err), "metrics": {}}


def test_the_token_file_becomes_readable_by_its_owner_only(tmp_path):
    from cnnsweep.distributed.cluster import restrict_token_file

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)  # as Ray 2.60 writes it
    restrict_token_file(token)
    assert token.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere"
    target.write_text("x")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    restrict_token_file(link)  # a link is not followed: it may point at anything
    assert target.stat().st_mode & 0o777 == 0o644
