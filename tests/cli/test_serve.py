"""`cnnsweep serve`: argument errors caught before Ray starts (exit 2 with a message), and a real
server process that shuts down cleanly (exit 0) on SIGTERM and Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from cnnsweep.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_serve_missing_model_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2 and "model file not found" in result.output


def test_serve_name_count_must_match_models(tmp_path):
    result = CliRunner().invoke(app, ["serve", "a.onnx", "b.onnx", "--name", "only-one"])
    assert result.exit_code == 2 and "one per model" in result.output


def _settings_from(monkeypatch, args: list[str]):
    """The ServeSettings (and keyword arguments) `cnnsweep serve ARGS` would start a server with."""
    from cnnsweep.distributed.serve import server

    seen = {}
    monkeypatch.setattr(server, "serve_forever", lambda settings, **kwargs: seen.update(settings=settings, **kwargs))
    result = CliRunner().invoke(app, ["serve", *args])
    return result, seen


def test_serve_defaults_are_serve_settings_defaults(monkeypatch, tiny_onnx):
    from cnnsweep.serving import ServeSettings

    result, seen = _settings_from(monkeypatch, [str(tiny_onnx)])
    assert result.exit_code == 0, result.output
    defaults = ServeSettings(models=[str(tiny_onnx)])
    for field in ("num_replicas", "autoscaling_config", "max_batch_size", "batch_wait_timeout_s", "num_cpus",
                  "num_gpus", "max_body_bytes", "request_timeout_s"):
        assert getattr(seen["settings"], field) == getattr(defaults, field), field


def test_serve_options_reach_the_settings_in_their_units(monkeypatch, tiny_onnx):
    result, seen = _settings_from(monkeypatch, [
        str(tiny_onnx), "--replicas", "auto", "--autoscaling-config", '{"min_replicas": 1, "max_replicas": 3}',
        "--batch-wait-ms", "5", "--max-body-mb", "1", "--request-timeout-s", "12"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert settings.num_replicas == "auto" and settings.autoscaling_config == {"min_replicas": 1, "max_replicas": 3}
    assert settings.batch_wait_timeout_s == 0.005 and settings.max_body_bytes == 1024 * 1024
    assert settings.request_timeout_s == 12


@pytest.mark.parametrize("args, message", [
    (["--replicas", "many"], "neither a number nor 'auto'"),
    (["--autoscaling-config", "{nope"], "not JSON"),
    (["--autoscaling-config", "[1]"], "JSON object"),
    (["--autoscaling-config", '{"max_replicas": 2}'], "needs num_replicas 'auto'"),
])
def test_serve_bad_scaling_options_exit_2(monkeypatch, tiny_onnx, args, message):
    result, seen = _settings_from(monkeypatch, [str(tiny_onnx), *args])
    assert result.exit_code == 2 and message in result.output and not seen, result.output


def test_serve_rejects_a_file_that_is_not_a_cnnsweep_export(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    result = CliRunner().invoke(app, ["serve", str(junk)])
    assert result.exit_code == 2 and "cannot load" in result.output


# ---------------------------------------------------------------------------- a real server process

def _wait_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            pass
        time.sleep(1)
    proc.kill()
    pytest.fail(f"server not ready after {seconds} s (rc {proc.poll()}): {proc.communicate()[1][-2000:]}")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_process_exits_0_on_sigterm_and_ctrl_c(tmp_path, tiny_onnx, sig):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-c", "from cnnsweep.cli import app; app()", "serve",
                             str(tiny_onnx), "--port", str(port), "--cpus-per-replica", "0.5"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_ready(proc, f"http://127.0.0.1:{port}", 180)
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("server still running 90 s after the signal")
    assert proc.returncode == 0, stderr[-3000:]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)
