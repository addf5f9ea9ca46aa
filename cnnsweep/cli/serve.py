"""`cnnsweep serve MODEL.onnx [MODEL2.onnx ...]`."""

from __future__ import annotations

from typing import List, Optional

import typer

from cnnsweep.cli.app import USAGE_EXIT, app, err, friendly_errors, styled


def _specs(models: List[str], names: Optional[List[str]]) -> list[dict]:
    from cnnsweep.serving import ServeConfigError

    if names and len(names) != len(models):
        raise ServeConfigError(f"--name given {len(names)} times for {len(models)} models: give one per model")
    return [{"path": m, "name": n} for m, n in zip(models, names or [None] * len(models))]


def _shown(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _ready_message(url: str, names: list[str], port: int, direct_ingress: bool, grpc: Optional[str],
                   fast: Optional[str] = None) -> None:
    err.print(styled("serving", "bold green", f"{', '.join(names)} at {url}  (Ctrl-C to stop)"), highlight=False)
    if fast:  # the same API, answered by the replicas themselves (one port shared by a node's replicas)
        err.print(f"  fast HTTP front (every replica, no proxy) at {fast}", highlight=False)
    if direct_ingress:  # each replica on its own port; clients spread their requests over them
        from cnnsweep.distributed.serve import replica_urls

        err.print(f"  direct ingress, one URL per replica: {' '.join(replica_urls(port))}", highlight=False,
                  soft_wrap=True)
    if grpc:
        _grpc_message(grpc, direct_ingress)
    err.print(f"  curl -F file=@img.png {url}/v2/models/{names[0]}/predict", highlight=False, soft_wrap=True)
    err.print(f"  API docs: {url}/docs", highlight=False)


def _grpc_message(address: str, direct_ingress: bool) -> None:
    """Where the KServe/Triton gRPC service answers (tritonclient.grpc.InferenceServerClient(url=...))."""
    err.print(f"  gRPC (KServe/Triton inference.GRPCInferenceService) at {address}", highlight=False)
    if direct_ingress:
        from cnnsweep.distributed.serve import replica_urls

        port = int(address.rsplit(":", 1)[1])
        err.print(f"  direct ingress, one gRPC address per replica: {' '.join(replica_urls(port, protocol='gRPC'))}",
                  highlight=False, soft_wrap=True)


@app.command("serve")
@friendly_errors
def serve_cmd(
    models: List[str] = typer.Argument(..., help=".onnx files written by `cnnsweep export`"),
    name: Optional[List[str]] = typer.Option(None, "--name", help="served name, one per model, in order "
                                             "[file name without .onnx]"),
    host: str = typer.Option("127.0.0.1", "--host", help="bind address (0.0.0.0 exposes it to the network; "
                             "the API has no authentication)"),
    port: int = typer.Option(8000, "--port"),
    replicas: int = typer.Option(1, "--replicas", help="replicas, each holding every model"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", help="images per ONNX Runtime call (and per request)"),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", help="how long a batch waits to fill, ms"),
    cpus_per_replica: float = typer.Option(1.0, "--cpus-per-replica", help="Ray CPUs per replica "
                                           "(= ONNX Runtime threads)"),
    gpus_per_replica: float = typer.Option(0.0, "--gpus-per-replica", help="> 0 runs on CUDA "
                                           "(needs onnxruntime-gpu)"),
    max_body_mb: float = typer.Option(2.0, "--max-body-mb", help="request body limit, MiB (413 above)"),
    request_timeout_s: float = typer.Option(30.0, "--request-timeout-s", help="whole-request deadline, "
                                            "seconds (408 above)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address [RAY_ADDRESS or local]"),
    direct_ingress: bool = typer.Option(False, "--direct-ingress", help="each replica serves HTTP on its own "
                                        "port (30000-31000, printed at start) without Ray's proxy: 2.3-3x the "
                                        "single-image throughput on 2 cores (BENCHMARKS.md); no load "
                                        "balancing across replicas"),
    fast_port: Optional[int] = typer.Option(None, "--fast-port", min=1, max=65535, help="each replica also "
                                            "answers the HTTP API itself on this port (on --host; the "
                                            "replicas of a machine share it), skipping Ray Serve's proxy and "
                                            "request path: the fastest path for one image per request "
                                            "(BENCHMARKS.md) [off]"),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", min=1, max=65535, help="also serve the "
                                            "KServe/Triton gRPC protocol on this port (on --host; needs "
                                            "tritonclient[grpc]) [off]"),
) -> None:
    """Serve models over HTTP with Ray Serve (Open Inference Protocol v2 + image upload); blocks until
    Ctrl-C or SIGTERM, then shuts down cleanly (exit 0)."""
    from cnnsweep.distributed.serve import serve_forever
    from cnnsweep.serving import ServeConfigError, build_settings

    try:
        settings = build_settings({
            "models": _specs(models, name), "num_replicas": replicas, "max_batch_size": max_batch_size,
            "max_ongoing_requests": max(64, 2 * max_batch_size), "batch_wait_timeout_s": batch_wait_ms / 1000,
            "num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica,
            "max_body_bytes": int(max_body_mb * 1024 * 1024), "fast_port": fast_port, "fast_host": host})
        names = [m.served_name for m in settings.models]
        grpc = None if grpc_port is None else f"{_shown(host)}:{grpc_port}"
        fast = None if fast_port is None else f"http://{_shown(host)}:{fast_port}"
        serve_forever(settings, on_ready=lambda url: _ready_message(url, names, port, direct_ingress, grpc, fast),
                      host=host, port=port, address=address, request_timeout_s=request_timeout_s,
                      direct_ingress=direct_ingress, grpc_port=grpc_port)
    except ServeConfigError as e:
        err.print(styled("error:", "bold red", e), highlight=False, soft_wrap=True)
        raise typer.Exit(USAGE_EXIT) from None
