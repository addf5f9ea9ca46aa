"""`cnnsweep serve MODEL.onnx [MODEL2.onnx ...]`."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from cnnsweep.cli.app import USAGE_EXIT, app, err, friendly_errors, styled

MiB = 1024 * 1024


def _specs(models: List[str], names: Optional[List[str]]) -> list[dict]:
    from cnnsweep.serving import ServeConfigError

    if names and len(names) != len(models):
        raise ServeConfigError(f"--name given {len(names)} times for {len(models)} models: give one per model")
    return [{"path": m, "name": n} for m, n in zip(models, names or [None] * len(models))]


def _shown(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _ready_message(url: str, names: list[str], grpc: Optional[str]) -> None:
    err.print(styled("serving", "bold green", f"{', '.join(names)} at {url}  (Ctrl-C to stop)"), highlight=False)
    if grpc:  # where the KServe/Triton service answers (tritonclient.grpc.InferenceServerClient(url=...))
        err.print(f"  gRPC (KServe/Triton inference.GRPCInferenceService) at {grpc}", highlight=False)
    err.print(f"  curl -F file=@img.png {url}/v2/models/{names[0]}/predict", highlight=False, soft_wrap=True)
    err.print(f"  API docs: {url}/docs", highlight=False)


def _setting(field: str, flag: str, scale: float = 1.0, unit: str = "", **kwargs):
    """A typer option whose default and help come from ServeSettings' field (declared once there),
    shown in the option's unit: `scale` x the field's value (ms for seconds: 1000)."""
    from cnnsweep.serving.settings import ServeSettings

    info = ServeSettings.model_fields[field]
    default = info.default if scale == 1.0 or info.default is None else info.default * scale
    help_text = info.description if not unit else f"{info.description.rsplit(',', 1)[0]}, {unit}"
    return typer.Option(default, flag, help=help_text, **kwargs)


def _replicas(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a number nor 'auto'") from None


def _json_object(value: Optional[str]) -> Optional[dict]:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"not JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"min_replicas\": 1, \"max_replicas\": 4}'")
    return parsed


@app.command("serve")
@friendly_errors
def serve_cmd(
    models: List[str] = typer.Argument(..., help=".onnx files written by `cnnsweep export`"),
    name: Optional[List[str]] = typer.Option(None, "--name", help="served name, one per model, in order "
                                             "[file name without .onnx]"),
    host: str = typer.Option("127.0.0.1", "--host", help="bind address (0.0.0.0 exposes it to the network; "
                             "the API has no authentication)"),
    port: int = typer.Option(8000, "--port"),
    replicas: str = _setting("num_replicas", "--replicas", metavar="N|auto"),
    autoscaling_config: Optional[str] = _setting("autoscaling_config", "--autoscaling-config", metavar="JSON"),
    max_batch_size: int = _setting("max_batch_size", "--max-batch-size"),
    batch_wait_ms: float = _setting("batch_wait_timeout_s", "--batch-wait-ms", 1000, "ms"),
    cpus_per_replica: float = _setting("num_cpus", "--cpus-per-replica"),
    gpus_per_replica: float = _setting("num_gpus", "--gpus-per-replica"),
    max_body_mb: float = _setting("max_body_bytes", "--max-body-mb", 1 / MiB, "MiB (413 above)"),
    request_timeout_s: float = _setting("request_timeout_s", "--request-timeout-s"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address [RAY_ADDRESS or local]"),
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
            "models": _specs(models, name), "num_replicas": _replicas(replicas),
            "autoscaling_config": _json_object(autoscaling_config), "max_batch_size": max_batch_size,
            "max_ongoing_requests": max(64, 2 * max_batch_size), "batch_wait_timeout_s": batch_wait_ms / 1000,
            "num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica,
            "max_body_bytes": int(max_body_mb * MiB), "request_timeout_s": request_timeout_s})
        names = [m.served_name for m in settings.models]
        grpc = None if grpc_port is None else f"{_shown(host)}:{grpc_port}"
        serve_forever(settings, on_ready=lambda url: _ready_message(url, names, grpc),
                      host=host, port=port, address=address, grpc_port=grpc_port)
    except ServeConfigError as e:
        err.print(styled("error:", "bold red", e), highlight=False, soft_wrap=True)
        raise typer.Exit(USAGE_EXIT) from None
