"""`ServeSettings`: everything the server needs, validated once (also the `args` of the Serve config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MiB = 1024 * 1024


class ServeConfigError(ValueError):
    """A serving setup problem, phrased for a person (missing model file, duplicate name, bad limit)."""


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # an .onnx written by `cnnsweep export`
    name: Optional[str] = None  # URL name; None = the file name without .onnx

    @property
    def served_name(self) -> str:
        return self.name or Path(self.path).stem


class ServeSettings(BaseModel):
    """Every serving default, declared once: `cnnsweep serve` derives its options (default, unit, help)
    from these fields, and serve/config.yaml's `args` are validated against them."""
    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)  # also accepts plain paths
    max_batch_size: int = Field(32, ge=1, le=4096, description="images per ONNX Runtime call (and per request)")
    # Short: under load, requests queue up while the previous batch computes, so batches fill anyway;
    # at low load a long wait is pure added latency.
    batch_wait_timeout_s: float = Field(0.002, ge=0, le=1, description="how long a batch waits to fill, seconds")
    num_replicas: Union[int, Literal["auto"]] = Field(
        1, description="replicas, each holding every model; 'auto': Serve's autoscaler sizes it (autoscaling_config)")
    # Ray's AutoscalingConfig (min_replicas, max_replicas, target_ongoing_requests, upscale_delay_s, ...),
    # checked by Ray when the deployment is built; needs num_replicas 'auto'. None with 'auto': Ray's defaults.
    autoscaling_config: Optional[dict[str, Any]] = Field(
        None, description="Ray Serve autoscaling_config as JSON, e.g. '{\"min_replicas\": 1, \"max_replicas\": 4}' "
        "(with num_replicas, --replicas, 'auto')")
    # Per replica: in flight at once. Must be >= max_batch_size, else a batch can never fill. Each one
    # may hold a body of up to max_body_bytes, so this bounds the replica's memory (see worst_case_bytes).
    max_ongoing_requests: int = Field(64, ge=1)
    # Waiting in the proxy (no body read yet); beyond this the proxy answers 503 (-1 = unbounded).
    max_queued_requests: int = Field(128, ge=-1)
    retry_after_s: Optional[float] = Field(1.0, ge=0)  # Retry-After header on those 503s, seconds
    num_cpus: float = Field(1.0, gt=0, description="Ray CPUs per replica (= ONNX Runtime threads)")
    num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per replica; > 0 runs on CUDA (needs onnxruntime-gpu)")
    num_threads: Optional[int] = Field(None, ge=1)  # ORT intra-op threads; None = max(1, int(num_cpus))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # 2 MiB: 32 GTSRB images as JSON FP32 text are ~1 MiB; PNG uploads far less.
    max_body_bytes: int = Field(2 * MiB, ge=1024, description="request body limit, bytes (413 above)")
    # Longest wait for the next body chunk, seconds -> 408. Per read only: a client dripping one byte
    # every read_timeout_s - epsilon passes it; request_timeout_s bounds that.
    read_timeout_s: float = Field(10.0, gt=0)
    # Whole request, seconds: Serve's HTTP proxy and gRPC proxy (http_options / grpc_options
    # request_timeout_s, then 408 / DEADLINE_EXCEEDED), and inside each replica (body, inference, answer).
    request_timeout_s: float = Field(30.0, gt=0, description="whole-request deadline, seconds (408 above)")
    # Large bodies / images are parsed or decoded in a thread, at most this many at once per replica:
    # a JSON body expands ~20x into Python objects and a decoded image to ~9 bytes/pixel, so this (not
    # max_ongoing_requests) bounds that memory.
    max_heavy_requests: int = Field(2, ge=1)
    max_image_pixels: int = Field(2048 * 2048, ge=1)  # decoded image limit (decompression bombs) -> 413
    max_json_depth: int = Field(32, ge=4)  # nesting limit for JSON bodies -> 400
    top_k: int = Field(5, ge=1)  # /predict default
    access_log: bool = False  # Ray Serve's per-request log lines: off, they cost more CPU than the model
    # Freeze the replica's start-up heap out of the garbage collector's reach (serving/heap.py): a full
    # collection otherwise stops the replica for ~300 ms. Off only to measure what it buys.
    gc_freeze: bool = True

    @field_validator("models", mode="before")
    @classmethod
    def _paths_as_specs(cls, v: Any) -> Any:
        if isinstance(v, (str, Path)):
            v = [v]
        return [{"path": str(m)} if isinstance(m, (str, Path)) else m for m in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> "ServeSettings":
        names = [m.served_name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two models would be served as {dupes}: give them distinct names (--name)")
        if self.autoscaling_config is not None and self.num_replicas != "auto":
            raise ValueError(f"autoscaling_config needs num_replicas 'auto' (not {self.num_replicas}): "
                             "the autoscaler sets the replica count")
        if isinstance(self.num_replicas, int) and self.num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1 or 'auto', not {self.num_replicas}")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({self.max_batch_size}), or batches can never fill")
        return self

    @property
    def worst_case_bytes(self) -> int:
        """Request memory one replica can be made to hold, bytes: every slot with a full body (read as
        chunks, then joined: 2 copies), plus the heavy slots parsing JSON (~20x the body) or decoding
        an image (uint8 RGBA + float32 RGB + resized: ~20 bytes per pixel)."""
        bodies = self.max_ongoing_requests * self.max_body_bytes * 2
        heavy = self.max_heavy_requests * max(20 * self.max_body_bytes, 20 * self.max_image_pixels)
        return bodies + heavy

    @property
    def threads(self) -> int:
        return self.num_threads or max(1, int(self.num_cpus))


def build_settings(raw: dict[str, Any] | ServeSettings) -> ServeSettings:
    """dict -> ServeSettings, or ServeConfigError listing every problem by field name."""
    if isinstance(raw, ServeSettings):
        return raw
    try:
        return ServeSettings.model_validate(raw)
    except ValidationError as err:
        from cnnsweep.config import format_validation_error  # heavy (the registries): not at `cnnsweep --help`

        raise ServeConfigError(format_validation_error(err, root="settings")) from None
