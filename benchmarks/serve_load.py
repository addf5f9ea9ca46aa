"""Load on the HTTP endpoint over loopback: throughput, p50/p95/p99 latency and errors at concurrency
1, 8, 32 and 128, and the ratio of served throughput to in-process ONNX Runtime on the same cores.

    .venv/bin/python benchmarks/serve_load.py --data ../shared/data/gtsrb            # starts a server
    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 --model model   # a running one
    .venv/bin/python benchmarks/serve_load.py --setups proxy-http proxy-grpc
    .venv/bin/python benchmarks/serve_load.py --setups haproxy-http proxy-http

Requests are real GTSRB validation images: `--mode predict` POSTs one PNG per request to /predict
(what a `curl` user does); `--mode infer` POSTs OIP v2 binary UINT8 tensors of `--images-per-request`
raw images to /infer. `--setups` measures several ingress paths of one server side by side, level by
level: proxy-http / proxy-grpc (Serve's proxies, what `cnnsweep serve` runs) and haproxy-http (Ray
2.60's HAProxy mode, RAY_SERVE_ENABLE_HA_PROXY=1 with direct ingress: HAProxy on `--port` balancing
over the replicas' own ports; measured, not used by `cnnsweep serve`, see BENCHMARKS.md "One serving
path"; Serve's Python proxy then runs as HAProxy's fallback on `--fallback-port`, and proxy-http
measures that one). The fast HTTP front and plain direct ingress setups were removed with those paths
(2026-12-06); their last numbers are in BENCHMARKS.md.
gRPC requests are KServe/Triton ModelInfer calls with one raw UINT8 image (grpc.aio stub). Each level is bounded by `--requests` and `--seconds`. The load generator runs
on the same cores as the server (say so when quoting the numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import time
from typing import Any
from collections import Counter

import aiohttp
import grpc
import numpy as np
from PIL import Image

from cnnsweep.data import load_dataset
from cnnsweep.export import OnnxRunner, read_metadata
from cnnsweep.serving.heap import freeze_startup_heap
from gtsrb_model import ensure_model
from raw_http import RawHttpPool, build_request, server_balance
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

# gRPC codes that count like an HTTP 5xx: the server failed or shed the request (RESOURCE_EXHAUSTED is
# Serve's backpressure, its 503), as opposed to a client mistake (INVALID_ARGUMENT, NOT_FOUND).
GRPC_SERVER_ERRORS = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED",
                      "DATA_LOSS", "CANCELLED", "UNIMPLEMENTED"}


def png_bodies(images: np.ndarray) -> list[bytes]:
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def infer_bodies(images: np.ndarray, per_request: int) -> list[tuple[bytes, int]]:
    """Triton binary requests: JSON header + raw N x H x W x C uint8 pixels."""
    out = []
    for i in range(0, len(images) - per_request + 1, per_request):
        hwc = np.ascontiguousarray(images[i:i + per_request].transpose(0, 2, 3, 1))
        head = json.dumps({"inputs": [{"name": "image", "shape": list(hwc.shape), "datatype": "UINT8",
                                       "parameters": {"binary_data_size": hwc.nbytes}}],
                           "outputs": [{"name": "logits", "parameters": {"classification": 1}}]}).encode()
        out.append((head + hwc.tobytes(), len(head)))
    return out


def grpc_requests(images: np.ndarray, per_request: int, model: str) -> list:
    """KServe/Triton ModelInferRequest: raw N x H x W x C uint8 pixels (preprocessed by the server, as
    an uploaded PNG is), the top-1 class back (classification extension, like /predict's answer)."""
    out = []
    for i in range(0, len(images) - per_request + 1, per_request):
        hwc = np.ascontiguousarray(images[i:i + per_request].transpose(0, 2, 3, 1))
        req = pb.ModelInferRequest(model_name=model, raw_input_contents=[hwc.tobytes()])
        req.inputs.add(name="image", datatype="UINT8", shape=list(hwc.shape))
        req.outputs.add(name="probabilities").parameters["classification"].int64_param = 1
        out.append(req)
    return out


def _request(body, mode: str) -> tuple[bytes, dict]:
    if mode == "predict":
        return body, {"Content-Type": "image/png"}
    return body[0], {"Inference-Header-Content-Length": str(body[1]), "Content-Type": "application/octet-stream"}


async def run_open_loop(urls: list[str], bodies: list, mode: str, rate: float, seconds: float,
                        connections: int = 512, client: str = "aiohttp", driver: str = "workers") -> dict:
    """Requests arriving at a fixed `rate` per second (open loop, like independent users), for the
    latency at a given fraction of the saturation throughput. HTTP: over at most `connections`
    keep-alive connections (512: nearly a new connection per arrival once the server falls behind;
    a small pool: users behind a keep-alive load balancer). A request waiting for a free connection
    is timed from its arrival, so that wait counts as latency.

    `driver`: "tasks" sleeps until each arrival and starts a Task for it (one timer and one Task per
    request); "workers" (HTTP only) releases the arrivals due every millisecond into a queue that
    `connections` worker coroutines drain, one request at a time each: the same arrivals, timing
    and connection limit, for less of the load generator's CPU, which it takes from the server."""
    driver = driver if mode != "grpc" else "tasks"  # gRPC multiplexes one channel: no connection workers
    latencies, codes, slow = [], Counter(), []
    cpu = time.process_time()
    async with open_client(urls, bodies, mode, connections, client) as send:
        start, n = time.perf_counter(), int(rate * seconds)

        async def send_and_note(i: int, t0: float) -> None:
            await send(i, codes, latencies, t0)  # timed from arrival
            if time.perf_counter() - t0 > SLOW_S:
                slow.append(t0 - start)

        if driver == "workers":
            await _drive_with_workers(send_and_note, rate, n, start, connections)
        else:
            await _drive_with_tasks(send_and_note, rate, n, start)
        wall = time.perf_counter() - start
        # raw client: the requests each server process answered (connections still open here)
        balance = [server_balance(p) for p in getattr(send, "pools", [])]
    out = summarize(latencies, codes, wall, 0, time.process_time() - cpu)
    out["offered_per_s"] = rate
    out["driver"] = driver
    out["slow_arrivals_per_s"] = slow_histogram(slow, seconds)
    if balance:
        out["requests_per_server_process"] = balance
    return out


async def _drive_with_tasks(send, rate: float, n: int, start: float) -> None:
    tasks = []
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.ensure_future(send(i, start + i / rate)))
    await asyncio.gather(*tasks)


async def _drive_with_workers(send, rate: float, n: int, start: float, workers: int, tick_s: float = 0.001) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await send(*item)

    pool = [asyncio.ensure_future(worker()) for _ in range(workers)]
    released = 0
    while released < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        for i in range(released, due):
            queue.put_nowait((i, start + i / rate))  # each still timed from its own arrival
        released = due
        await asyncio.sleep(tick_s)
    for _ in pool:
        queue.put_nowait(None)
    await asyncio.gather(*pool)


SLOW_S = 0.050  # the goal's p99 bound: requests slower than this are located in time


def slow_histogram(arrivals: list[float], seconds: float) -> dict[str, int]:
    """Requests over SLOW_S by the 0.5 s window they arrived in: spread out (queueing near saturation)
    or bunched in one window (a pause somewhere: a collector, a background process, the scheduler)."""
    counts = Counter(int(a / 0.5) for a in arrivals)
    return {f"{k * 0.5:.1f}s": v for k, v in sorted(counts.items()) if k * 0.5 < seconds + 1}


@contextlib.asynccontextmanager
async def open_client(urls: list[str], bodies: list, mode: str, connections: int, client: str = "aiohttp"):
    """`send(i, codes, latencies)`: request i (body i, target i round-robin), timed; gRPC, or HTTP with
    aiohttp or the lean client of raw_http.py (`client="raw"`)."""
    if mode == "grpc":
        channels = [grpc.aio.insecure_channel(u) for u in urls]
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]

        async def send(i: int, codes: Counter, latencies: list[float], t0: float | None = None) -> None:
            await _timed_grpc(stubs[i % len(stubs)], bodies[i % len(bodies)], codes, latencies, t0)

        try:
            yield send
        finally:
            for c in channels:
                await c.close()
        return
    if client == "raw":
        async with raw_client(urls, bodies, mode, connections) as send:
            yield send
        return
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections), timeout=timeout) as session:
        async def send(i: int, codes: Counter, latencies: list[float], t0: float | None = None) -> None:
            await _timed_post(session, urls[i % len(urls)], bodies[i % len(bodies)], mode, codes, latencies, t0)

        yield send


@contextlib.asynccontextmanager
async def raw_client(urls: list[str], bodies: list, mode: str, connections: int):
    """raw_http's pools, one per target with at most `connections` each (aiohttp's limit is per host
    too); every request's bytes are built before the first is sent."""
    pools = [RawHttpPool(u, connections) for u in urls]
    requests = [[build_request(u, *_request(b, mode)) for b in bodies] for u in urls]

    async def send(i: int, codes: Counter, latencies: list[float], t0: float | None = None) -> None:
        t = time.perf_counter() if t0 is None else t0
        try:
            async with asyncio.timeout(60):  # a timer, not a Task per request (asyncio.wait_for)
                status = await pools[i % len(pools)].post(requests[i % len(urls)][i % len(bodies)])
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as err:
            codes[type(err).__name__] += 1
            return
        codes[status] += 1
        latencies.append(time.perf_counter() - t)

    send.pools = pools  # for server_balance
    try:
        yield send
    finally:
        for pool in pools:
            await pool.close()


async def _timed_grpc(stub, request, codes: Counter, latencies: list[float], t0: float | None = None) -> None:
    """One ModelInfer call: OK counted as 200 (like HTTP), anything else by its status code name;
    timed from `t0` (its scheduled arrival) when given."""
    t = time.perf_counter() if t0 is None else t0
    try:
        await stub.ModelInfer(request, timeout=60)
    except grpc.aio.AioRpcError as err:
        codes[err.code().name] += 1
        return
    codes[200] += 1
    latencies.append(time.perf_counter() - t)


async def _timed_post(session: aiohttp.ClientSession, url: str, body: Any, mode: str, codes: Counter,
                      latencies: list[float], t0: float | None = None) -> None:
    """One request: its status (or client error name) counted; its latency (s) kept only if it answered,
    timed from `t0` (its scheduled arrival) when given."""
    data, headers = _request(body, mode)
    t = time.perf_counter() if t0 is None else t0
    try:
        async with session.post(url, data=data, headers=headers) as r:
            await r.read()
            codes[r.status] += 1
    except aiohttp.ClientError as err:
        codes[type(err).__name__] += 1
        return
    latencies.append(time.perf_counter() - t)


async def run_level(urls: list[str], bodies: list, mode: str, concurrency: int, max_requests: int, seconds: float,
                    client: str = "aiohttp") -> dict:
    latencies, codes, sent, cpu = [], Counter(), 0, time.process_time()
    deadline = time.perf_counter() + seconds

    async def worker(send) -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            i = sent
            sent += 1
            await send(i, codes, latencies)

    async with open_client(urls, bodies, mode, concurrency, client) as send:
        start = time.perf_counter()
        await asyncio.gather(*(worker(send) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summarize(latencies, codes, wall, concurrency, time.process_time() - cpu)


def summarize(latencies: list[float], codes: Counter, wall: float, concurrency: int, cpu_s: float = 0.0) -> dict:
    """`client_cpu_ms_per_request`: the load generator's own CPU (this process, all threads) per request."""
    ok = codes.get(200, 0)
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {"concurrency": concurrency, "requests": sum(codes.values()), "ok": ok, "seconds": round(wall, 2),
            "requests_per_s": ok / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "errors": {str(k): v for k, v in codes.items() if k != 200},
            "client_cpu_ms_per_request": round(1000 * cpu_s / max(1, sum(codes.values())), 3),
            "server_errors_5xx": sum(v for k, v in codes.items() if (isinstance(k, int) and k >= 500)
                                     or (isinstance(k, str) and k in GRPC_SERVER_ERRORS))}


def in_process_ort(runner: OnnxRunner, x: np.ndarray, batch: int, seconds: float = 2.0) -> float:
    """Images/s of the same model in this process (a runner with the replica's thread count) at `batch`."""
    xb = x[:batch]
    for _ in range(5):
        runner.logits(xb)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner.logits(xb)
        n += len(xb)
    return n / (time.perf_counter() - start)


def start_local_server(onnx_path: str, args) -> str:
    from cnnsweep.serving import build_settings
    from cnnsweep.distributed.serve import start_server

    settings = build_settings({"models": [{"path": onnx_path, "name": args.model}], "gc_freeze": args.gc_freeze == "both",
                               "max_batch_size": args.max_batch_size, "num_cpus": args.cpus_per_replica,
                               "num_replicas": args.replicas, "batch_wait_timeout_s": args.batch_wait_ms / 1000,
                               "max_ongoing_requests": args.max_ongoing or max(64, 2 * args.max_batch_size),
                               "max_queued_requests": args.max_queued, "num_threads": args.ort_threads})
    grpc_port = args.grpc_port if any("grpc" in name for name in args.setups) else None
    if args.haproxy:
        haproxy_environment(args)
    return start_server(settings, port=args.port, grpc_port=grpc_port)


def haproxy_environment(args) -> None:
    """Ray 2.60's HAProxy mode, read by the controller and replicas (inherited on a local start). Its
    side ports move off Ray's defaults (8404, 9101, 8500, 9500), which other instances on this machine
    may hold; its files are already per Ray node (/tmp/haproxy-serve/<node id>/). HAProxy routes to the
    replicas' own ports (direct ingress); a local instance drains a stopping replica 1 s, not 30."""
    os.environ |= {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
                   "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
                   "RAY_SERVE_HAPROXY_STATS_PORT": str(args.fallback_port + 1),
                   "RAY_SERVE_HAPROXY_METRICS_PORT": str(args.fallback_port + 2),
                   "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(args.fallback_port),
                   "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(args.fallback_port + 3)}


def setup_targets(name: str, args, proxy_url: str) -> tuple[str, list[str]]:
    """(mode, targets) of one setup: proxy-http, proxy-grpc (Serve's proxies), haproxy-http."""
    proxy, protocol = name.split("-")
    if proxy == "haproxy":  # HAProxy on --port, balancing over the replicas' own ports
        return args.mode, [f"http://127.0.0.1:{args.port}/v2/models/{args.model}/{args.mode}"]
    if proxy == "proxy" and protocol == "http" and args.haproxy:  # Serve's proxy, as HAProxy's fallback
        return args.mode, [f"http://127.0.0.1:{args.fallback_port}/v2/models/{args.model}/{args.mode}"]
    if protocol == "grpc":
        return "grpc", [f"127.0.0.1:{args.grpc_port}"]
    return args.mode, [f"{proxy_url}/v2/models/{args.model}/{args.mode}"]


SETUPS = ["proxy-http", "proxy-grpc", "haproxy-http"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/gtsrb")
    p.add_argument("--model-dir", default="runs/bench-gtsrb")
    p.add_argument("--url", default=None, help="a running server (else one is started here)")
    p.add_argument("--model", default="gtsrb")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--mode", choices=["predict", "infer"], default="predict")
    p.add_argument("--images-per-request", type=int, default=1, help="--mode infer only")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--requests", type=int, default=2000, help="max requests per level")
    p.add_argument("--seconds", type=float, default=20, help="max seconds per level")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--reference-batch", type=int, default=32, help="batch of the in-process ORT reference "
                   "(the ratio's denominator; kept at 32 when --max-batch-size changes)")
    p.add_argument("--cpus-per-replica", type=float, default=2)
    p.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime threads per replica "
                   "[= --cpus-per-replica]; the in-process reference keeps --cpus-per-replica threads")
    p.add_argument("--reference-threads", type=int, default=None, help="threads of the in-process ORT "
                   "reference [--cpus-per-replica]: 2 = the whole box, for replicas of 1 CPU each")
    p.add_argument("--max-queued", type=int, default=512)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--max-ongoing", type=int, default=None, help="per replica [max(64, 2 x batch)]")
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--same-thread", action="store_true", help="RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0 "
                   "(user code on the replica's own event loop: one thread hop less per request)")
    p.add_argument("--throughput-optimized", action="store_true", help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1 "
                   "(Ray 2.60: user code on the replica loop, GC frozen at start-up, buffered request logs, ...)")
    p.add_argument("--grpc-port", type=int, default=9123, help="Serve's gRPC proxy (grpc setups)")
    p.add_argument("--fallback-port", type=int, default=8125, help="haproxy-http setup: Serve's Python proxy "
                   "(HAProxy's fallback; proxy-http then measures it); +1..+3: HAProxy's stats, metrics and "
                   "the fallback's gRPC ports")
    p.add_argument("--setups", nargs="+", default=None, choices=SETUPS, help="measured side by side, "
                   "interleaved level by level [proxy-http]; "
                   "HTTP setups use --mode, gRPC ones send raw UINT8 images to ModelInfer")
    p.add_argument("--client-nice", type=int, default=0, help="niceness added to this process (load generator "
                   "and ORT reference) once the server is up; 15 = the replicas' own (Ray sets it)")
    p.add_argument("--open-loop-connections", type=int, default=512, help="HTTP connections of the open-loop "
                   "level (0 = the concurrency of the best closed-loop level)")
    p.add_argument("--clients", nargs="+", choices=["aiohttp", "raw"], default=["aiohttp"],
                   help="HTTP load-generator clients, measured side by side (raw: benchmarks/raw_http.py)")
    p.add_argument("--client-loop", choices=["asyncio", "uvloop"], default="asyncio",
                   help="the load generator's event loop")
    p.add_argument("--gc-freeze", choices=["both", "client", "none"], default="both", help="freeze the start-up "
                   "heaps of the replicas (ServeSettings.gc_freeze) and of this load generator (whose collector is "
                   "then also off during each level), of this one only, or of neither")
    p.add_argument("--open-loop-driver", nargs="+", choices=["workers", "tasks"], default=["workers"],
                   help="how the open loop releases arrivals (run_open_loop; tasks = before 2026-12-03 session 6); "
                        "several: one open loop each, in turn")
    p.add_argument("--pin-replicas", action="store_true", help="pin each replica process to its own core")
    p.add_argument("--saturation", choices=["max", "median"], default="max",
                   help="the open loop's 100%%: the best closed-loop level (max), or the median of all of them "
                        "(repeat one --concurrency to measure a noisy machine's capacity more than once)")
    p.add_argument("--open-loop-fraction", type=float, default=0.8, help="then a fixed-rate level at this "
                   "fraction of the best throughput measured (0 = skip)")
    args = p.parse_args()
    args.client_gc_freeze = args.gc_freeze != "none"
    args.setups = args.setups or ["proxy-http"]
    args.haproxy = any(name.startswith("haproxy") for name in args.setups)
    return args


def pin_replicas() -> dict[int, int]:
    """Each Serve replica process on a core of its own (round-robin over this machine's cores); the
    rest (client, Ray's own processes) stays unpinned. Experiment only: cnnsweep serve does not pin."""
    pids = sorted(int(p) for p in subprocess.run(["pgrep", "-f", "ServeReplica"], capture_output=True,
                                                  text=True).stdout.split())
    cores = sorted(os.sched_getaffinity(0))
    pinned = {}
    for i, pid in enumerate(pids):
        core = cores[i % len(cores)]
        os.sched_setaffinity(pid, {core})  # the process's threads created later inherit it; set all now too
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {core})
        pinned[pid] = core
    return pinned


def run_open_loops(args, setups: dict, levels: dict, bodies: dict) -> dict:
    """Per setup (and driver), a fixed-rate level at --open-loop-fraction of its best closed-loop level."""
    open_loops = {}
    for name, (mode, targets, client) in setups.items():
        best = max(levels[name], key=lambda r: r["images_per_s"])
        saturation = (statistics.median(r["requests_per_s"] for r in levels[name]) if args.saturation == "median"
                      else best["requests_per_s"])
        rate = args.open_loop_fraction * saturation
        pool = args.open_loop_connections or best["concurrency"]
        for driver in args.open_loop_driver:
            loop = run_async(args, run_open_loop(targets, bodies[mode], mode, rate, args.seconds, pool, client, driver))
            loop |= {"connections": pool, "loadavg": os.getloadavg()[0], "saturation_per_s": saturation}
            key = name if len(args.open_loop_driver) == 1 else f"{name}:{driver}"
            open_loops[key] = loop
            print(f"{key:<12} open loop at {args.open_loop_fraction:.0%} of {saturation:.0f} req/s ({args.saturation}) "
                  f"({pool} connections): "
                  f"{loop['requests_per_s']:.1f} req/s  p50 {loop['p50_ms']:.1f} ms  p99 {loop['p99_ms']:.1f} ms"
                  f"  errors {loop['errors'] or '-'}  5xx {loop['server_errors_5xx']}  load {loop['loadavg']:.1f}"
                  f"  client CPU {loop['client_cpu_ms_per_request']:.3f} ms/req"
                  f"  per server process {loop.get('requests_per_server_process', '-')}"
                  f"  slow (> {SLOW_S * 1000:.0f} ms) by arrival {loop['slow_arrivals_per_s'] or '-'}",
                  flush=True)
    return open_loops


def main() -> None:
    args = parse_args()
    if args.same_thread:  # read by the replicas, which inherit the driver's environment on a local start
        os.environ["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] = "0"
    if args.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    report = ensure_model(args.data, args.model_dir)
    info = read_metadata(report["onnx"])
    valid = load_dataset(validate_data(info.config["data"], args.data)).valid.images[:512]
    x = valid.permute(0, 2, 3, 1).contiguous().numpy()  # raw pixels: the graph preprocesses
    threads = args.reference_threads or max(1, int(args.cpus_per_replica))
    session = OnnxRunner.load(report["onnx"], num_threads=threads, device="cpu")
    proxy_url = args.url or start_local_server(report["onnx"], args)
    if args.pin_replicas:
        print(f"replicas pinned: {pin_replicas()}", flush=True)
    if args.client_nice:  # Ray runs its workers (the replicas) at niceness 15; a nice-0 client on the
        os.nice(args.client_nice)  # same cores would otherwise get the CPU first whenever both want it
    raw = valid.numpy()
    per_request = 1 if args.mode == "predict" else args.images_per_request
    bodies = {"predict": png_bodies(raw), "grpc": grpc_requests(raw, 1, args.model),
              "infer": infer_bodies(raw, args.images_per_request)}
    # a setup per ingress path and HTTP client ("proxy-http:raw"); gRPC setups have one client, grpc.aio
    setups = {f"{name}:{client}" if "grpc" not in name else name: (*setup_targets(name, args, proxy_url), client)
              for name in args.setups for client in args.clients if "grpc" not in name or client == args.clients[0]}
    print(f"endpoints: {setups}", flush=True)
    levels = {name: [] for name in setups}
    if args.client_gc_freeze:  # the load generator's own heap (torch, numpy, the bodies): its full collections
        freeze_startup_heap()  # would pause every in-flight request's clock too (cnnsweep/serving/heap.py)
    client_gc = GcPauses()
    for c in args.concurrency:
        for name, (mode, targets, client) in setups.items():  # interleaved: each sees the same background load
            level = run_async(args, run_level(targets, bodies[mode], mode, c, args.requests, args.seconds, client))
            level["images_per_s"] = level["requests_per_s"] * (1 if mode == "grpc" else per_request)
            # The baseline is measured right after each level: on a shared machine the background load
            # drifts within minutes, and a ratio is only meaningful between numbers taken together.
            level["ort_images_per_s"] = {b: in_process_ort(session, x, b) for b in (1, args.reference_batch)}
            level["ratio_vs_ort_batch"] = level["images_per_s"] / level["ort_images_per_s"][args.reference_batch]
            level["ratio_vs_ort_batch_1"] = level["images_per_s"] / level["ort_images_per_s"][1]
            level["loadavg"] = os.getloadavg()[0]
            levels[name].append(level)
            print(f"{name:<12} {format_level(level)}", flush=True)
    open_loops = run_open_loops(args, setups, levels, bodies) if args.open_loop_fraction > 0 else {}
    print(json.dumps({"open_loop": open_loops, "replicas": args.replicas, "same_thread": args.same_thread,
                      "haproxy": args.haproxy, "setups": {n: t for n, (_, t, _) in setups.items()},
                      "client_loop": args.client_loop,
                      "throughput_optimized": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED"),
                      "mode": args.mode, "images_per_request": per_request, "cpu_count": os.cpu_count(),
                      "replica_threads": args.ort_threads or max(1, int(args.cpus_per_replica)),
                      "reference_threads": threads, "max_batch_size": args.max_batch_size, "gc_freeze": args.gc_freeze, "client_nice": args.client_nice,
                      "client_gc": client_gc.report(), "levels": levels}))
    print(f"client GC: {client_gc.report()}")


class GcPauses:
    """The load generator's own collection pauses (gc.callbacks), for the report: count and longest, ms."""

    def __init__(self):
        self.t0, self.pauses = 0.0, []
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], 1000 * (time.perf_counter() - self.t0)))

    def report(self) -> dict:
        return {"collections": len(self.pauses), "max_ms": round(max((p for _, p in self.pauses), default=0), 2),
                "gen2": sum(g == 2 for g, _ in self.pauses)}


def run_async(args, coro):
    """One level on a fresh event loop: asyncio's, or uvloop's (`--client-loop uvloop`). With
    --gc-freeze both|client the load generator's collector is off during the level and runs between levels, so
    that no collection pause of this process is timed as server latency (like a C client: wrk has no GC)."""
    if args.client_gc_freeze:
        gc.disable()
    try:
        if args.client_loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coro)
        return asyncio.run(coro)
    finally:
        if args.client_gc_freeze:
            gc.enable()
            gc.collect()


def validate_data(data: dict, root: str):
    from cnnsweep.config import DataConfig

    return DataConfig.model_validate({**data, "root": root})


def format_level(r: dict) -> str:
    return (f"c={r['concurrency']:>4}  {r['ok']:>5}/{r['requests']:<5} ok  {r['images_per_s']:8.1f} img/s  "
            f"p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
            f"errors {r['errors'] or '-'}  in-process ORT {max(r['ort_images_per_s'].values()):7.0f} img/s  "
            f"served/ORT(batch) {r['ratio_vs_ort_batch']:.3f}  served/ORT(batch 1) {r['ratio_vs_ort_batch_1']:.3f}  "
            f"load {r['loadavg']:.1f}  client CPU {r['client_cpu_ms_per_request']:.3f} ms/req")


if __name__ == "__main__":
    main()
