"""A real two-node Ray cluster on loopback: `ray job submit` a sweep, and `cnnsweep tune --address`.

The cluster is stopped WITHOUT `ray stop`: that command kills every Ray process on the machine,
including the test session's own instance (tests/conftest.py) and anyone else's. Each node is a
`ray start --block` in its own process group, so killing those two groups ends exactly this
cluster (gcs, raylets, dashboard, workers); a last sweep kills stragglers whose command line names
this cluster's private temp dirs. Token auth is on, with a token that lives only in the test's env.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SWEEP = {"name": "cluster", "data": {"name": "digits"},
         "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1}, "sched": {"name": "none"},
         "train": {"epochs": 1, "batch_size": 64, "amp": "off"}, "scaling": {"num_workers": 1},
         "search": {"algorithm": "grid", "scheduler": {"name": "fifo"},
                    "space": {"model.width": {"choice": [8, 12]}}}}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    """Fixed defaults (52365, 8080, ...) may belong to another Ray instance on this machine."""
    listen, grpc, metrics, runtime_env = _free_ports(4)
    return [f"--dashboard-agent-listen-port={listen}", f"--dashboard-agent-grpc-port={grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}"]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"nothing listens on port {port} after {timeout} s")


def _count_nodes(gcs: str, env: dict) -> int:
    code = f"import ray; ray.init(address={gcs!r}); print(sum(n['Alive'] for n in ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


def _stop(procs: list[subprocess.Popen], temp_dirs: list[str]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=30)
    for pid in filter(str.isdigit, os.listdir("/proc")):  # stragglers that left the process groups
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if any(d.encode() in cmdline for d in temp_dirs):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    # One temp dir per node, as on separate machines (sharing one, the second node's runtime-env
    # agent deletes the job's working_dir files under the head's feet). Short: Ray's sockets live there.
    temp_dirs = [tempfile.mkdtemp(prefix="rc", dir="/tmp") for _ in range(2)]
    # not the test session's own instance: its state API address (cnnsweep.distributed.cluster) stays there
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    gcs_port, dash_port, client_port = _free_ports(3)
    gcs = f"127.0.0.1:{gcs_port}"
    common = ["--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs_port}", f"--temp-dir={temp_dirs[0]}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", f"--ray-client-server-port={client_port}",
         *_node_ports(), *common], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [head]
    try:
        _wait_port(dash_port, head)
        worker = subprocess.Popen([str(BIN / "ray"), "start", f"--address={gcs}", f"--temp-dir={temp_dirs[1]}",
                                   *_node_ports(), *common],
                                  env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(worker)
        deadline = time.monotonic() + 90
        while _count_nodes(gcs, env) < 2:
            assert time.monotonic() < deadline, "the second node never joined"
            time.sleep(1)
        yield {"gcs": gcs, "dashboard": f"http://127.0.0.1:{dash_port}", "env": env}
    finally:
        _stop(procs, temp_dirs)


def _check_results(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["finished"] == 2 and summary["trials"]["errored"] == 0, summary["trials"]
    assert len(pd.read_csv(out / "leaderboard.csv")) == 2
    assert (out / "best" / "checkpoint.pt").is_file()
    return summary


def test_ray_job_submit_runs_a_sweep_on_the_two_node_cluster(cluster, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps(SWEEP))
    out = tmp_path / "job-out"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(REPO),
           "--", "cnnsweep", "tune", str(sweep), "--output", str(out), "--json"]
    done = subprocess.run(cmd, cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    summary = _check_results(out)
    assert summary["max_concurrent"] == 2  # 4 CPUs over two nodes, 1-worker trials, 2 trials


def test_cnnsweep_tune_address_connects_to_the_cluster(cluster, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    # what this test is about is the connection: the job-submit test above runs the export and analysis
    sweep.write_text(json.dumps(SWEEP | {"search": SWEEP["search"] | {"export": False, "analyze": False}}))
    out = tmp_path / "client-out"
    cmd = [str(BIN / "cnnsweep"), "tune", str(sweep), "--output", str(out), "--address", cluster["gcs"], "--json"]
    done = subprocess.run(cmd, cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["output"] == str(out) and summary["best"]["val_acc"] > 0.1
    _check_results(out)
