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

from cnnsweep.distributed.serve.proxy_setup import register_grpc_messages
from cnnsweep.serving.heap import freeze_startup_heap
from cnnsweep.serving.http_app import build_http_app
from cnnsweep.serving.model import ServedModel, load_served_models
from cnnsweep.serving.settings import ServeConfigError, ServeSettings, build_settings

DEPLOYMENT_NAME = "InferenceServer"
APP_NAME = "cnnsweep"


def num_images(items: list[np.ndarray]) -> int:
    """Batch size in images, not requests: one request may carry several images."""
    return sum(len(x) for x in items)


def split_rows(out: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """A batch's output -> one block of rows per request, in order (`parts`: the requests' inputs)."""
    return np.split(out, np.cumsum([len(x) for x in parts])[:-1])


@serve.ingress()  # Ray: FastAPI app built per replica by __serve_build_asgi_app__ (routes need the models)
class InferenceServer:
    def __init__(self, settings: dict[str, Any]):
        import torch

        torch.set_num_threads(1)  # torch only fits channels (or runs a CLAHE pre-step) here; ORT owns the cores
        register_grpc_messages()  # Ray: gRPC requests from the proxy arrive pickled
        self.settings: ServeSettings = build_settings(settings)
        self.models: dict[str, ServedModel] = load_served_models(self.settings)
        # One thread runs ORT so batches execute one after another while the event loop keeps
        # accepting requests (ORT releases the GIL): the next batch fills during this one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        self._batchers = {name: self._build_batcher(m.runner.logits_of) for name, m in self.models.items()}
        if self.settings.gc_freeze:  # last: everything alive now is start-up state (imports, models)
            freeze_startup_heap()

    def __serve_build_asgi_app__(self):
        return build_http_app(self)

    def _build_batcher(self, run: Callable[[list[np.ndarray]], np.ndarray]):
        executor = self._executor

        async def run_batch(items: list[np.ndarray]) -> list[np.ndarray]:
            # `run` is OnnxRunner.logits_of: requests of one image size share one ORT call
            logits = await asyncio.get_running_loop().run_in_executor(executor, run, items)
            return split_rows(logits, items)

        # Ray: @serve.batch queues concurrent calls (one per request) into one ORT call of up to
        # max_batch_size images, waiting at most batch_wait_timeout_s for a batch to fill.
        return serve.batch(max_batch_size=self.settings.max_batch_size,
                           batch_wait_timeout_s=self.settings.batch_wait_timeout_s,
                           batch_size_fn=num_images)(run_batch)

    async def infer(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C raw pixels -> logits N x K, batched with concurrent requests."""
        return await self._batchers[name](pixels)

    # ------------------------------------------------------------------ KServe/Triton gRPC (OIP v2)
    # Ray: Serve's gRPC ingress (the proxy's port) routes
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


def autoscaling(settings: ServeSettings) -> dict[str, Any]:
    """num_replicas, and autoscaling_config checked by Ray's own AutoscalingConfig (a typo or an
    impossible range is a ServeConfigError naming it, before anything is deployed)."""
    if settings.autoscaling_config is None:
        return {"num_replicas": settings.num_replicas}
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig

    unknown = sorted(set(settings.autoscaling_config) - set(AutoscalingConfig.model_fields))
    if unknown:  # Ray ignores unknown keys: a typo would silently fall back to its default
        raise ServeConfigError(f"autoscaling_config: unknown {unknown}; known: {sorted(AutoscalingConfig.model_fields)}")
    try:
        config = AutoscalingConfig(**settings.autoscaling_config)
    except (ValidationError, TypeError, ValueError) as e:  # Ray: pydantic errors, or its own ValueErrors
        raise ServeConfigError(f"autoscaling_config: {e}") from None
    return {"num_replicas": "auto", "autoscaling_config": config.model_dump(exclude_unset=True)}


def build_deployment(settings: ServeSettings):
    """The deployment with the scaling and backpressure options from `settings`."""
    actor = {"num_cpus": settings.num_cpus}
    if settings.num_gpus:
        actor["num_gpus"] = settings.num_gpus
    # Ray: max_ongoing_requests per replica (>= max_batch_size so batches fill); beyond
    # max_queued_requests waiting in the proxy, new requests get 503 (+ Retry-After) instead of
    # joining an unbounded queue. num_replicas "auto": Serve's autoscaler, fed by the replicas' and
    # proxies' ongoing-request counts (every request passes through Serve, so it sees all the load).
    return serve.deployment(InferenceServer, name=DEPLOYMENT_NAME, **autoscaling(settings),
                            max_ongoing_requests=settings.max_ongoing_requests,
                            max_queued_requests=settings.max_queued_requests,
                            backpressure_config={"status_code": 503, "retry_after_s": settings.retry_after_s},
                            logging_config={"enable_access_log": settings.access_log}, ray_actor_options=actor)


def build_app(args: dict[str, Any] | ServeSettings):
    """Ray Serve application builder: `import_path: cnnsweep.distributed.serve:build_app` with `args` = ServeSettings."""
    settings = build_settings(args)
    return build_deployment(settings).bind(settings.model_dump())
