"""`cnnsweep serve`: argument errors caught before Ray starts (exit 2 with a message), and a real
server process that shuts down cleanly (exit 0) on SIGTERM and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def test_serve_fast_port_held_by_another_program_exits_2_before_ray_starts(tiny_onnx):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(tiny_onnx), "--fast-port", str(port)])
    assert result.exit_code == 2 and f"127.0.0.1:{port} cannot be bound" in result.output, result.output


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


def _wait_for_line(proc: subprocess.Popen, log: Path, pattern: str, seconds: float) -> re.Match:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if m := re.search(pattern, log.read_text()):
            return m
        time.sleep(1)
    proc.kill()
    pytest.fail(f"no {pattern!r} after {seconds} s (rc {proc.poll()}): {log.read_text()[-2000:]}")


@pytest.mark.ray
@pytest.mark.slow
def test_serve_direct_ingress_answers_on_the_replica_port_and_exits_0(tmp_path, tiny_onnx):
    """--direct-ingress: the replica itself answers on its own port (not the proxy's), with the same
    4xx JSON and read deadline (408), over HTTP and, with --grpc-port, over the KServe/Triton gRPC
    protocol; --fast-port: the replica's fast front answers there too; SIGTERM still ends the process
    with exit 0 and closes those ports."""
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, grpc_port, fast_port = ports
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", "from cnnsweep.cli import app; app()", "serve",
                                 str(tiny_onnx), "--port", str(port), "--cpus-per-replica", "0.5",
                                 "--direct-ingress", "--grpc-port", str(grpc_port), "--fast-port", str(fast_port)],
                                env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=err)
        grpc_replica = _wait_for_line(proc, log, r"one gRPC address per replica: (127\.0\.0\.1:\d+)", 180).group(1)
        _check_grpc_replica(grpc_replica, grpc_port)
        url = _wait_for_line(proc, log, r"one URL per replica: (http://127\.0\.0\.1:(\d+))", 10)
        replica, replica_port = url.group(1), int(url.group(2))
        assert replica_port != port
        r = requests.post(f"{replica}/v2/models/tiny/predict", data=_png_bytes(), timeout=30,
                          headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] in {"a", "b", "c"}, r.text
        bad = requests.post(f"{replica}/v2/models/tiny/predict", data=b"not an image", timeout=30,
                            headers={"Content-Type": "image/png"})
        assert 400 <= bad.status_code < 500 and bad.json()["error"]
        assert _stalled_upload_answer(replica_port).startswith("HTTP/1.1 408")  # the read deadline holds here too
        fast = _wait_for_line(proc, log, r"fast HTTP front \(every replica, no proxy\) at (http://127\.0\.0\.1:\d+)", 10)
        assert fast.group(1) == f"http://127.0.0.1:{fast_port}"
        r = requests.post(f"{fast.group(1)}/v2/models/tiny/predict", data=_png_bytes(), timeout=30,
                          headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] in {"a", "b", "c"}, r.text
        assert _stalled_upload_answer(fast_port).startswith("HTTP/1.1 408")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("server still running 90 s after SIGTERM")
    assert proc.returncode == 0, log.read_text()[-3000:]
    for closed in (replica, f"http://127.0.0.1:{fast_port}"):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{closed}/v2/health/live", timeout=2)


def _check_grpc_replica(address: str, proxy_port: int) -> None:
    """The replica's own gRPC port: raw UINT8 pixels in, probabilities out; a bad dtype INVALID_ARGUMENT."""
    import grpc
    import tritonclient.grpc as tg
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    assert int(address.rsplit(":", 1)[1]) != proxy_port
    client = tg.InferenceServerClient(url=address)
    inp = tg.InferInput("image", [2, 8, 8, 1], "UINT8")
    inp.set_data_from_numpy((np.arange(128, dtype=np.uint8) * 2).reshape(2, 8, 8, 1))
    probs = client.infer("tiny", [inp], outputs=[tg.InferRequestedOutput("probabilities")]).as_numpy("probabilities")
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    bad = pb.ModelInferRequest(model_name="tiny", raw_input_contents=[bytes(64 * 8)])
    bad.inputs.add(name="input", datatype="FP64", shape=[1, 1, 8, 8])
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(bad, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP64" in err.value.details()


def _stalled_upload_answer(port: int) -> str:
    """A client that sends headers and part of the body, then nothing: the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(b"POST /v2/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n\x89PNG")
        answer = b""
        while b'"}' not in answer and (chunk := conn.recv(65536)):  # headers and body may come apart
            answer += chunk
    return answer.decode()


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(buf, format="PNG")
    return buf.getvalue()
