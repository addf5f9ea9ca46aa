"""The KServe/Triton gRPC methods for a hub (the Ray Serve deployment, or any object with `settings`,
`models` and `async infer(name, x)`), without Ray: each takes the request message and a context
with `set_code` / `set_details` (grpc's, or Ray Serve's `RayServegRPCContext`), and returns the reply
message; a client mistake sets INVALID_ARGUMENT or NOT_FOUND on the context and returns an empty reply.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import grpc

from cnnsweep.serving import grpc_protocol as gp
from cnnsweep.serving.http_app import INLINE_BODY_BYTES, Hub, bounded_infer

# The methods a deployment exposes, named as the gRPC service names them (Ray Serve routes
# /inference.GRPCInferenceService/<Method> to the deployment method of the same name).
METHODS = ("ModelInfer", "ModelMetadata", "ModelReady", "ServerLive", "ServerReady", "ServerMetadata")
SERVICER_FUNCTION = "tritonclient.grpc.service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"


async def answer(method: str, context: Any, call: Callable[[], Awaitable[Any]], timeout_s: float) -> Any:
    """`await call()`, or, on a GrpcError, its code and message on `context` and an empty reply; past
    `timeout_s` seconds, DEADLINE_EXCEEDED (the whole message is in before a method runs, so this bounds
    the work, like the HTTP app's request_timeout_s; Serve's gRPC proxy has its own deadline)."""
    try:
        return await asyncio.wait_for(call(), timeout_s)
    except gp.GrpcError as err:
        context.set_code(err.code)
        context.set_details(err.message)
    except asyncio.TimeoutError:
        context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
        context.set_details(f"{method} not answered within {timeout_s:g} s (request_timeout_s)")
    return gp.empty_response(method)


class GrpcService:
    """One replica's gRPC methods over its hub; `heavy` bounds large tensors preprocessed off the loop."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.heavy = asyncio.Semaphore(hub.settings.max_heavy_requests)

    async def model_infer(self, request) -> Any:
        model = gp.find_model(self.hub.models, request.model_name, request.model_version)
        if sum(len(raw) for raw in request.raw_input_contents) <= INLINE_BODY_BYTES:
            x = gp.model_input(request, model, self.hub.settings)  # one 32 x 32 image: ~50 us, inline
        else:  # a large batch of raw pixels: decode and check it in a thread, at most `heavy` at once
            async with self.heavy:
                x = await asyncio.to_thread(gp.model_input, request, model, self.hub.settings)
        return gp.infer_response(request, model, await bounded_infer(self.hub, model, x, self.heavy))

    async def model_metadata(self, request) -> Any:
        return gp.metadata_response(gp.find_model(self.hub.models, request.name, request.version))

    async def model_ready(self, request) -> Any:
        return gp.model_ready_response(self.hub.models, request.name, request.version)

    async def server_live(self, request) -> Any:
        return gp.pb.ServerLiveResponse(live=True)

    async def server_ready(self, request) -> Any:
        return gp.pb.ServerReadyResponse(ready=bool(self.hub.models))

    async def server_metadata(self, request) -> Any:
        return gp.server_metadata_response()

    async def call(self, method: str, request, context) -> Any:
        """Run gRPC method `method` (e.g. "ModelInfer") on `request`."""
        handler = getattr(self, _snake(method))
        return await answer(method, context, lambda: handler(request), self.hub.settings.request_timeout_s)


def _snake(method: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")
