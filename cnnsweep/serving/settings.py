"""`ServeSettings`: everything the server needs, validated once (also the `args` of the Serve config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnsweep.config import format_validation_error

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
    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)  # also accepts plain paths
    max_batch_size: int = Field(32, ge=1, le=4096)  # images per ONNX Runtime call; also per request
    # How long a batch waits to fill, seconds. Short: under load, requests queue up while the previous
    # batch computes, so batches fill anyway; at low load a long wait is pure added latency.
    batch_wait_timeout_s: float = Field(0.002, ge=0, le=1)
    num_replicas: int = Field(1, ge=1)
    # Per replica: in flight at once. Must be >= max_batch_size, else a batch can never fill. Each one
    # may hold a body of up to max_body_bytes, so this bounds the replica's memory (see worst_case_bytes).
    max_ongoing_requests: int = Field(64, ge=1)
    # Waiting in the proxy (no body read yet); beyond this the proxy answers 503 (-1 = unbounded).
    max_queued_requests: int = Field(128, ge=-1)
    retry_after_s: Optional[float] = Field(1.0, ge=0)  # Retry-After header on those 503s, seconds
    num_cpus: float = Field(1.0, gt=0)  # Ray CPUs reserved per replica
    num_gpus: float = Field(0.0, ge=0)  # > 0 (with onnxruntime-gpu) runs on the CUDA provider
    num_threads: Optional[int] = Field(None, ge=1)  # ORT intra-op threads; None = max(1, int(num_cpus))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Request body limit -> 413. 2 MiB: 32 GTSRB images as JSON FP32 text are ~1 MiB; PNG uploads far less.
    max_body_bytes: int = Field(2 * MiB, ge=1024)
    # Longest wait for the next body chunk, and (on the fast front) for a whole request head, seconds
    # -> 408. Per read only: a client dripping one byte every read_timeout_s - epsilon passes it.
    read_timeout_s: float = Field(10.0, gt=0)
    # Whole request inside the replica (body, inference, answer), seconds -> 408: what bounds that drip.
    # Serve's proxy has its own (http_options.request_timeout_s, also 30 s by default).
    request_timeout_s: float = Field(30.0, gt=0)
    # Large bodies / images are parsed or decoded in a thread, at most this many at once per replica:
    # a JSON body expands ~20x into Python objects and a decoded image to ~9 bytes/pixel, so this (not
    # max_ongoing_requests) bounds that memory.
    max_heavy_requests: int = Field(2, ge=1)
    max_image_pixels: int = Field(2048 * 2048, ge=1)  # decoded image limit (decompression bombs) -> 413
    max_json_depth: int = Field(32, ge=4)  # nesting limit for JSON bodies -> 400
    top_k: int = Field(5, ge=1)  # /predict default
    # The fast HTTP front (fast_server.py): each replica also answers the HTTP API itself on this port,
    # shared by the replicas of a node (SO_REUSEPORT), skipping Serve's proxy and request path. None = off.
    fast_port: Optional[int] = Field(None, ge=1, le=65535)
    fast_host: str = "127.0.0.1"  # its bind address (the API has no authentication)
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
        raise ServeConfigError(format_validation_error(err, root="settings")) from None
