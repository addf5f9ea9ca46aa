"""The Ray Serve deployment: one class, every served model in each replica, batched ONNX Runtime.

Why one deployment rather than one per model behind a router: the models are small, and an extra
deployment hop would serialize every request across actors twice; each replica here parses,
preprocesses and infers in one process. `num_replicas` scales all models together.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
from ray import serve

from cnnsweep.distributed.serve.ray_internals import bind_grpc_to_host
from cnnsweep.distributed.serve.proxy_setup import register_grpc_messages
from cnnsweep.serving.batcher import split_rows
from cnnsweep.serving.heap import freeze_startup_heap
from cnnsweep.serving.http_app import build_http_app
from cnnsweep.serving.model import ServedModel, load_served_models
from cnnsweep.serving.settings import ServeSettings, build_settings

DEPLOYMENT_NAME = "InferenceServer"
APP_NAME = "cnnsweep"


def num_images(items: list[np.ndarray]) -> int:
    """Batch size in images, not requests: one request may carry several images."""
    return sum(len(x) for x in items)


@serve.ingress()  # Ray: FastAPI app built per replica by __serve_build_asgi_app__ (routes need the models)
class InferenceServer:
    def __init__(self, settings: dict[str, Any]):
        import torch

        torch.set_num_threads(1)  # torch only preprocesses single requests here; ORT owns the cores
        bind_grpc_to_host()  # Ray: direct ingress starts this replica's gRPC server after __init__
        register_grpc_messages()  # Ray: gRPC requests from the proxy arrive pickled
        self.settings: ServeSettings = build_settings(settings)
        self.models: dict[str, ServedModel] = load_served_models(self.settings)
        # One thread runs ORT so batches execute one after another while the event loop keeps
        # accepting requests (ORT releases the GIL): the next batch fills during this one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        self._batchers = {name: self._build_batcher(m.run) for name, m in self.models.items()}
        self._pixel_batchers = {name: self._build_batcher(m.run_pixels) for name, m in self.models.items()}
        self._fast = None
        if self.settings.fast_port is not None:  # our own HTTP front beside Serve's: same models and ORT thread
            from cnnsweep.serving.fast_server import start_fast_server

            self._fast = start_fast_server(self.settings, self.models, self._executor)
        if self.settings.gc_freeze:  # last: everything alive now is start-up state (imports, models, servers)
            freeze_startup_heap()

    def check_health(self) -> None:
        """Ray: called by the controller every few seconds; raising makes Serve replace this replica."""
        if self._fast is not None and not self._fast.alive:
            raise RuntimeError(f"the fast HTTP front on port {self.settings.fast_port} has stopped")

    def __del__(self):
        """Ray: Serve calls this when it stops the replica (scale-down, redeploy, shutdown)."""
        if getattr(self, "_fast", None) is not None:
            self._fast.stop()

    def __serve_build_asgi_app__(self):
        return build_http_app(self)

    def _build_batcher(self, run: Callable[[np.ndarray], np.ndarray]):
        executor = self._executor

        async def run_batch(items: list[np.ndarray]) -> list[np.ndarray]:
            logits = await asyncio.get_running_loop().run_in_executor(executor, run, np.concatenate(items))
            return split_rows(logits, items)

        # Ray: @serve.batch queues concurrent calls (one per request) into one ORT call of up to
        # max_batch_size images, waiting at most batch_wait_timeout_s for a batch to fill.
        return serve.batch(max_batch_size=self.settings.max_batch_size,
                           batch_wait_timeout_s=self.settings.batch_wait_timeout_s,
                           batch_size_fn=num_images)(run_batch)

    async def infer(self, name: str, x: np.ndarray) -> np.ndarray:
        """Normalized float32 N x C x H x W -> logits N x K, batched with concurrent requests."""
        return await self._batchers[name](x)

    async def infer_pixels(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """One uint8 upload of the model's native shape -> logits 1 x K (preprocessed per batch)."""
        return await self._pixel_batchers[name](pixels[None])

    # ------------------------------------------------------------------ KServe/Triton gRPC (OIP v2)
    # Ray: Serve's gRPC ingress (the proxy's port, or each replica's own with direct ingress) routes
    # /inference.GRPCInferenceService/<Method> to the deployment method of the same name, with the
    # deserialized request and Ray's RayServegRPCContext as `grpc_context` (status code + details).

    @functools.cached_property
    def _grpc(self):
        from cnnsweep.serving.grpc_service import GrpcService  # needs tritonclient[grpc]: only when used

        return GrpcService(self)

    async def ModelInfer(self, request, grpc_context):
        return await self._grpc.call("ModelInfer", request, grpc_context)

    async def ModelMetadata(self, request, grpc_context):
        return await self._grpc.call("ModelMetadata", request, grpc_context)

    async def ModelReady(self, request, grpc_context):
        return await self._grpc.call("ModelReady", request, grpc_context)

    async def ServerLive(self, request, grpc_context):
        return await self._grpc.call("ServerLive", request, grpc_context)

    async def ServerReady(self, request, grpc_context):
        return await self._grpc.call("ServerReady", request, grpc_context)

    async def ServerMetadata(self, request, grpc_context):
        return await self._grpc.call("ServerMetadata", request, grpc_context)


def build_deployment(settings: ServeSettings):
    """The deployment with the scaling and backpressure options from `settings`."""
    actor = {"num_cpus": settings.num_cpus}
    if settings.num_gpus:
        actor["num_gpus"] = settings.num_gpus
    # Ray: max_ongoing_requests per replica (>= max_batch_size so batches fill); beyond
    # max_queued_requests waiting in the proxy, new requests get 503 (+ Retry-After) instead of
    # joining an unbounded queue.
    return serve.deployment(InferenceServer, name=DEPLOYMENT_NAME, num_replicas=settings.num_replicas,
                            max_ongoing_requests=settings.max_ongoing_requests,
                            max_queued_requests=settings.max_queued_requests,
                            backpressure_config={"status_code": 503, "retry_after_s": settings.retry_after_s},
                            logging_config={"enable_access_log": settings.access_log}, ray_actor_options=actor)


def build_app(args: dict[str, Any] | ServeSettings):
    """Ray Serve application builder: `import_path: cnnsweep.distributed.serve:build_app` with `args` = ServeSettings."""
    settings = build_settings(args)
    return build_deployment(settings).bind(settings.model_dump())
