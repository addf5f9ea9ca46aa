"""The KServe/Triton gRPC protocol of the real server (Serve's gRPC proxy on loopback), with
tritonclient's gRPC client and a raw stub: readiness, metadata, inference that agrees with the HTTP
path and in-process ONNX Runtime on real digits images, and bad input -> INVALID_ARGUMENT / NOT_FOUND."""

from __future__ import annotations

import io
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from cnnsweep.config import validate_config
from cnnsweep.data import load_dataset
from cnnsweep.engine import LocalHooks, fit
from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.export import OnnxRunner, export_checkpoint

grpc = pytest.importorskip("grpc")
tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
LIMITS = {"max_batch_size": 8, "max_ongoing_requests": 32, "max_body_bytes": 256 * 1024, "num_cpus": 0.5}
Code = grpc.StatusCode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cfg = validate_config({"data": {"name": "digits"}, "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
                           "train": {"epochs": 1, "batch_size": 64, "amp": "off"}})
    folder = tmp_path_factory.mktemp("digits")
    hooks = LocalHooks(output=folder / "run")
    fit(cfg, load_dataset(cfg.data), hooks)
    export_checkpoint(hooks.last_checkpoint, folder / "digits.onnx")
    return (folder / "digits.onnx", load_dataset(cfg.data).valid.images[:8].numpy(),  # uint8 N x 1 x 8 x 8 (max batch)
            hooks.last_checkpoint)


@pytest.fixture(scope="module")
def server(ray_session, digits):
    """`cnnsweep serve --grpc-port`: HTTP and gRPC proxies on 127.0.0.1, torn down after the module."""
    from ray import serve

    from cnnsweep.distributed.serve import start_server
    from cnnsweep.serving import build_settings

    grpc_port = _free_port()
    url = start_server(build_settings({"models": [str(digits[0])], **LIMITS}), port=_free_port(), grpc_port=grpc_port)
    address = f"127.0.0.1:{grpc_port}"
    client = tritongrpc.InferenceServerClient(url=address)
    _wait_grpc_ready(client)
    yield url, address, client
    client.close()
    serve.shutdown()


def _wait_grpc_ready(client, seconds: float = 60) -> None:
    """The gRPC proxy routes once it has heard of the app (a long-poll tick after serve.run returns)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception:  # noqa: BLE001 - UNAVAILABLE / NOT_FOUND until the proxy knows the app
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_readiness_and_metadata(server):
    _, _, client = server
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("nope")  # like Triton: false, not an error
    meta = client.get_model_metadata("digits", as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("image", "UINT8", ["-1", "-1", "-1", "1"])]
    assert [t["name"] for t in meta["outputs"]] == ["logits", "probabilities"]
    server_meta = client.get_server_metadata(as_json=True)
    assert server_meta["name"] == "cnnsweep" and "classification" in server_meta["extensions"]


def test_uint8_images_get_the_http_paths_probabilities(server, digits):
    """Raw pixels over gRPC go through the same preprocessing as an uploaded PNG over HTTP."""
    url, _, client = server
    images = digits[1][:, 0]  # N x 8 x 8 gray
    http = []
    for img in images:
        r = requests.post(f"{url}/v2/models/digits/predict?top_k=10", data=_png(img), timeout=30,
                          headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        http.append([p["score"] for p in sorted(r.json()["predictions"], key=lambda p: p["index"])])
    inp = tritongrpc.InferInput("image", [len(images), 8, 8, 1], "UINT8")
    inp.set_data_from_numpy(np.ascontiguousarray(images[..., None]))
    out = client.infer("digits", [inp], outputs=[tritongrpc.InferRequestedOutput("probabilities")])
    probs = out.as_numpy("probabilities")
    assert probs.dtype == np.float32 and probs.shape == (len(images), 10)
    np.testing.assert_allclose(probs, np.array(http), atol=1e-6)
    assert np.unique(probs.argmax(1)).size > 1  # a trained model: the images are told apart


def test_uint8_logits_equal_in_process_onnx_and_classification(server, digits):
    _, _, client = server
    path, images, checkpoint = digits
    x = np.ascontiguousarray(images[:7].transpose(0, 2, 3, 1))  # N x H x W x C raw pixels
    expected = OnnxRunner.load(path).logits(x)
    lm = load_model_from_checkpoint(checkpoint)
    with torch.inference_mode():  # the model file reproduces the PyTorch training path
        np.testing.assert_allclose(expected, lm.model(lm.preprocess(torch.from_numpy(images[:7]))).numpy(), atol=1e-4)
    inp = tritongrpc.InferInput("image", list(x.shape), "UINT8")
    inp.set_data_from_numpy(x)
    out = client.infer("digits", [inp], request_id="r7")
    assert out.get_response().id == "r7"
    np.testing.assert_allclose(out.as_numpy("logits"), expected, atol=1e-5)
    top = client.infer("digits", [inp], outputs=[tritongrpc.InferRequestedOutput("logits", class_count=3)])
    labels = [[s.decode().split(":") for s in row] for row in top.as_numpy("logits")]
    assert [[int(i) for _, i, _ in row] for row in labels] == np.argsort(-expected, 1)[:, :3].tolist()


def _request(shape=(1, 8, 8, 1), datatype="UINT8", name="image", raw=None, **fields) -> pb.ModelInferRequest:
    n = int(np.prod(shape))
    if raw is None:
        raw = np.zeros(n, dtype=np.float32 if datatype == "FP32" else np.uint8).tobytes()
    req = pb.ModelInferRequest(model_name=fields.pop("model_name", "digits"), **fields)
    req.inputs.add(name=name, datatype=datatype, shape=list(shape))
    req.raw_input_contents.append(raw)
    return req


def _two_inputs() -> pb.ModelInferRequest:
    req = _request()
    req.inputs.add(name="image", datatype="UINT8", shape=[1, 8, 8, 1])
    req.raw_input_contents.append(bytes(64))
    return req


def _output(name: str, **params) -> pb.ModelInferRequest:
    req = _request()
    out = req.outputs.add(name=name)
    for key, value in params.items():
        out.parameters[key].string_param = value
    return req


NAN = struct.pack("<f", float("nan")) * 64
BAD = [  # (id, request, expected code, a word the message must contain)
    ("unknown-model", _request(model_name="nope"), Code.NOT_FOUND, "nope"),
    ("unknown-version", _request(model_version="7"), Code.NOT_FOUND, "version"),
    ("dtype-int64", _request(datatype="INT64", raw=bytes(512)), Code.INVALID_ARGUMENT, "INT64"),
    ("dtype-fp16", _request(datatype="FP16", raw=bytes(128)), Code.INVALID_ARGUMENT, "FP16"),
    # the old normalized FP32 model input: refused with what to send instead, under either name
    ("dtype-fp32", _request(shape=(1, 1, 8, 8), datatype="FP32"), Code.INVALID_ARGUMENT, "UINT8"),
    ("fp32-old-input-name", _request(shape=(1, 1, 8, 8), datatype="FP32", name="input"), Code.INVALID_ARGUMENT,
     "unknown input 'input'"),
    ("fp32-nan", _request(shape=(1, 1, 8, 8), datatype="FP32", raw=NAN), Code.INVALID_ARGUMENT, "FP32"),
    ("shape-channels", _request(shape=(1, 8, 8, 2)), Code.INVALID_ARGUMENT, "shape"),
    ("shape-channels-first", _request(shape=(1, 1, 8, 8)), Code.INVALID_ARGUMENT, "shape"),
    ("shape-65-dims", _request(shape=[1] * 65, raw=bytes(1)), Code.INVALID_ARGUMENT, "dimensions"),
    ("shape-negative", _request(shape=(1, -8, 8, 1), raw=b""), Code.INVALID_ARGUMENT, "negative"),
    ("raw-too-short", _request(raw=bytes(10)), Code.INVALID_ARGUMENT, "bytes"),
    ("batch-over-limit", _request(shape=(9, 8, 8, 1)), Code.INVALID_ARGUMENT, "limit"),
    ("batch-empty", _request(shape=(0, 8, 8, 1)), Code.INVALID_ARGUMENT, "empty"),
    ("unknown-input", _request(name="pixels"), Code.INVALID_ARGUMENT, "pixels"),
    ("uint8-5-channels", _request(shape=(1, 8, 8, 5), datatype="UINT8"), Code.INVALID_ARGUMENT, "C in 1, 3, 4"),
    ("two-inputs", _two_inputs(), Code.INVALID_ARGUMENT, "exactly 1"),
    ("no-inputs", pb.ModelInferRequest(model_name="digits"), Code.INVALID_ARGUMENT, "exactly 1"),
    ("unknown-output", _output("probs"), Code.INVALID_ARGUMENT, "probs"),
    ("bad-classification", _output("logits", classification="three"), Code.INVALID_ARGUMENT, "classification"),
    ("values-over-limit", _request(shape=(1, 600, 600, 1), raw=b""), Code.INVALID_ARGUMENT, "limit"),
]


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server[1]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_client_status(stub, case):
    _, request, code, word = case
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, timeout=30)
    assert err.value.code() == code, err.value.details()
    assert word in err.value.details()


def test_unknown_model_metadata_is_not_found_and_the_server_still_answers(stub, server):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), timeout=30)
    assert err.value.code() == Code.NOT_FOUND and "nope" in err.value.details()
    reply = stub.ModelInfer(_request(), timeout=30)
    assert reply.outputs[0].name == "logits" and list(reply.outputs[0].shape) == [1, 10]
    assert len(reply.raw_output_contents[0]) == 10 * 4


def _listening_hosts(port: int) -> set[str]:
    """Addresses with a TCP socket listening on `port` (Linux /proc/net/tcp{,6}; 0A = LISTEN)."""
    hosts = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                words = bytes.fromhex(ip_hex)  # 32-bit words in host (little-endian) byte order
                raw = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
                hosts.add(socket.inet_ntop(family, raw))
    return hosts


def test_grpc_listens_on_loopback_only(server):
    """Ray binds its gRPC servers to [::] (every interface); `cnnsweep serve` keeps them on --host."""
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("needs Linux /proc/net/tcp")
    port = int(server[1].rsplit(":", 1)[1])
    hosts = _listening_hosts(port)  # gRPC may bind 127.0.0.1 through an IPv6 socket (v4-mapped)
    assert hosts and hosts <= {"127.0.0.1", "::ffff:127.0.0.1"}, hosts


def test_a_message_over_the_body_limit_is_refused_by_grpc_itself(stub):
    """RAY_SERVE_GRPC_MAX_MESSAGE_SIZE = max_body_bytes + envelope (Ray's default: 2 GiB)."""
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_request(shape=(8, 200, 400, 1), raw=bytes(8 * 200 * 400)), timeout=30)  # 640 KB
    assert err.value.code() == Code.RESOURCE_EXHAUSTED, err.value.details()
