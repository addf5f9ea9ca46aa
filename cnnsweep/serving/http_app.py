"""The FastAPI app: Open Inference Protocol v2 routes and a plain image-upload /predict route.

Built per replica around a `hub` (the Ray Serve deployment, or any object with `settings`,
`models` and `async infer(name, x)`), so this module has no Ray in it. Every client mistake is
answered as a 4xx `{"error": "..."}`; nothing a client sends reaches a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional, Protocol

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from cnnsweep.serving.body import read_body
from cnnsweep.serving.http_error import HttpError, bad_request
from cnnsweep.serving.images import IMAGE_CONTENT_TYPES, load_pixels, open_image
from cnnsweep.serving.model import VERSION, ServedModel
from cnnsweep.serving.protocol import HEADER_LENGTH, InferRequest, model_input, parse_infer_request
from cnnsweep.serving.responses import infer_response, top_k
from cnnsweep.serving.settings import ServeSettings

log = logging.getLogger("cnnsweep.serving")
JSON_TYPES = {"", "application/json", "application/octet-stream"}  # octet-stream: Triton binary bodies
# Work below these sizes runs inline on the event loop: decoding and preprocessing a 32 x 32 image
# takes ~50 us, less than a hop to the thread pool and back (which, on a busy machine, waits for a
# time slice). Larger images and bodies go to the thread pool so they never stall the loop.
INLINE_PIXELS = 128 * 128
INLINE_BODY_BYTES = 256 * 1024
MAX_TOP_K = 1000  # /predict's ?top_k= upper bound
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/x-portable-pixmap": {"schema": {"type": "string", "format": "binary"}}}}}


def inline_schema(schema: dict) -> dict:
    """A pydantic JSON schema with its `$defs` substituted in place: the route's body is read by hand
    (size and depth limits), so the model is not a FastAPI component that `#/$defs/...` could refer to."""
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return resolve(defs[ref.rsplit("/", 1)[-1]]) if ref else {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(InferRequest.model_json_schema())}}}}


class Hub(Protocol):
    settings: ServeSettings
    models: dict[str, ServedModel]

    async def infer(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C raw pixels -> logits N x K, batched with concurrent requests."""
        ...


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def find_model(hub: Hub, name: str, version: Optional[str] = None) -> ServedModel:
    model = hub.models.get(name)
    if model is None:
        raise HttpError(404, f"unknown model {name!r}; serving {sorted(hub.models)}")
    if version not in (None, "", VERSION):
        raise HttpError(404, f"model {name!r} has no version {version!r}; versions: [{VERSION!r}]")
    return model


async def read_upload(request: Request, settings: ServeSettings) -> bytes:
    """The image bytes of a multipart `file` field or of a raw image body."""
    media = media_type(request)
    if media != "multipart/form-data" and media not in IMAGE_CONTENT_TYPES | {""}:
        raise HttpError(415, f"Content-Type {media!r} is not an image upload: send multipart/form-data "
                             f"(curl -F file=@img.png) or a raw image/png, image/jpeg or PPM body")
    body = await read_body(request, settings.max_body_bytes, settings.read_timeout_s, settings.request_timeout_s)
    if media != "multipart/form-data":
        return body

    async def replay() -> dict:  # the body was already read (with the size cap); hand it to the parser
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except MultiPartException as exc:  # Starlette's parser errors, both kinds: our 400 JSON, one message
        raise bad_request(f"multipart body: {exc.message}") from None
    except StarletteHTTPException as exc:
        raise bad_request(f"multipart body: {exc.detail}") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HttpError(400, "multipart body needs a file field named `file` (curl -F file=@img.png)")
    return await upload.read()


def held_until_answered(model: ServedModel, pixels_per_image: int) -> bool:
    """Whether images of this size keep a `heavy` slot until their logits are back: above INLINE_PIXELS
    and above the model's own input size, their raw pixels and their resize to the model's size (~20
    bytes per pixel, in the batch's inference) would otherwise be bounded only by max_ongoing_requests
    (ServeSettings.worst_case_bytes counts them in the heavy slots). Smaller images cost no more than
    the model input itself and are batched freely."""
    _, h, w = model.info.input_shape
    return pixels_per_image > max(INLINE_PIXELS, h * w)


async def bounded_infer(hub: Hub, model: ServedModel, pixels: np.ndarray, heavy: asyncio.Semaphore) -> np.ndarray:
    """hub.infer on uint8 N x H x W x C pixels, holding a `heavy` slot meanwhile for large images."""
    if not held_until_answered(model, pixels.shape[1] * pixels.shape[2]):
        return await hub.infer(model.name, pixels)
    async with heavy:
        return await hub.infer(model.name, pixels)


async def upload_logits(hub: Hub, model: ServedModel, data: bytes, heavy: asyncio.Semaphore) -> np.ndarray:
    """Upload bytes -> logits 1 x K. Small images are decoded on the event loop, large ones off it, at
    most `heavy` at once (~20 bytes per pixel each), and those larger than the model's input keep their
    slot through inference (`held_until_answered`); the model file preprocesses, in one run per image
    size of the batch."""
    img = open_image(data, hub.settings.max_image_pixels)  # header only: cheap, rejects bombs before decoding
    n = img.size[0] * img.size[1]
    if n <= INLINE_PIXELS:
        return await hub.infer(model.name, as_batch(load_pixels(img)))
    async with heavy:
        pixels = await run_in_threadpool(load_pixels, img)
        if held_until_answered(model, n):
            return await hub.infer(model.name, as_batch(pixels))
    return await hub.infer(model.name, as_batch(pixels))


def as_batch(pixels: np.ndarray) -> np.ndarray:
    """A decoded H x W (gray) or H x W x C image -> 1 x H x W x C."""
    return (pixels[..., None] if pixels.ndim == 2 else pixels)[None]


def decode_infer(body: bytes, header_length: Optional[str], model: ServedModel,
                 settings: ServeSettings) -> tuple[InferRequest, np.ndarray]:
    """An OIP request body -> (request, model input): JSON parsing, tensor decoding, preprocessing."""
    req, tail = parse_infer_request(body, header_length, settings.max_json_depth)
    return req, model_input(req, tail, model, settings)


def internal_error(path: str, exc: Exception) -> dict:
    """The answer to a bug (logged with its traceback): a 500 body naming only the exception type."""
    log.exception("unexpected error on %s", path)
    return {"error": f"internal error ({type(exc).__name__})"}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = " ".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first['msg']}".strip(": ")}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(internal_error(request.url.path, exc), status_code=500)


async def within_deadline(app, scope: dict, receive, send, seconds: float) -> None:
    """Run the ASGI `app` on one request for at most `seconds`: then it is cancelled and answered 408
    JSON, or, if its answer has begun, cut off (the server closes the connection). Whatever the client
    does (drip its body, never read the answer), its request slot is free after `seconds`."""
    started = False

    async def tracking_send(message: dict) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        if not hasattr(asyncio, "timeout"):  # Python 3.10
            return await asyncio.wait_for(app(scope, receive, tracking_send), seconds)
        async with asyncio.timeout(seconds) as cm:  # 3.11+: no Task per request, unlike wait_for
            return await app(scope, receive, tracking_send)
    except asyncio.TimeoutError:
        if hasattr(asyncio, "timeout") and not cm.expired():
            raise  # the app's own TimeoutError: a bug, answered 500 by its handler or the server
    if not started:
        await JSONResponse({"error": f"request not answered within {seconds:g} s (request_timeout_s): "
                                     f"send the whole request promptly"}, status_code=408)(scope, receive, send)


class RequestDeadline:
    """ASGI middleware: every HTTP request of the app within `seconds` (`within_deadline`)."""

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        await within_deadline(self.app, scope, receive, send, self.seconds)


def build_http_app(hub: Hub) -> FastAPI:
    """The app for one replica (its own event loop, so its own heavy-work semaphore)."""
    app = FastAPI(title="cnnsweep inference", version=VERSION,
                  description="Open Inference Protocol v2 (KServe/Triton REST) + image upload")
    # Outermost: the deadline also covers the error handlers' answers and a client that never reads them.
    app.add_middleware(RequestDeadline, seconds=hub.settings.request_timeout_s)
    add_error_handlers(app)
    add_health_routes(app, hub)
    add_infer_routes(app, hub, asyncio.Semaphore(hub.settings.max_heavy_requests))
    return app


def add_health_routes(app: FastAPI, hub: Hub) -> None:
    @app.get("/v2", summary="server metadata")
    async def server_metadata() -> dict:
        return {"name": "cnnsweep", "version": VERSION, "extensions": ["classification", "binary_tensor_data"]}

    @app.get("/v2/health/live", summary="the server is running")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", summary="every model is loaded")
    async def ready() -> dict:
        return {"ready": bool(hub.models)}

    @app.get("/v2/models", summary="served models (cnnsweep extension)")
    async def list_models() -> dict:
        return {"models": [{"name": n, "versions": [VERSION], "platform": m.metadata()["platform"]}
                           for n, m in sorted(hub.models.items())]}

    @app.get("/v2/models/{name}", summary="model metadata")
    @app.get("/v2/models/{name}/versions/{version}", summary="model metadata")
    async def metadata(name: str, version: Optional[str] = None) -> dict:
        return find_model(hub, name, version).metadata()

    @app.get("/v2/models/{name}/ready", summary="the model is ready")
    @app.get("/v2/models/{name}/versions/{version}/ready", summary="the model is ready")
    async def model_ready(name: str, version: Optional[str] = None) -> dict:
        return {"name": find_model(hub, name, version).name, "ready": True}


def add_infer_routes(app: FastAPI, hub: Hub, heavy: asyncio.Semaphore) -> None:
    settings = hub.settings

    @app.post("/v2/models/{name}/infer", summary="OIP v2 inference", openapi_extra=INFER_BODY)
    @app.post("/v2/models/{name}/versions/{version}/infer", summary="OIP v2 inference", openapi_extra=INFER_BODY)
    async def infer(name: str, request: Request, version: Optional[str] = None) -> Response:
        model = find_model(hub, name, version)
        if media_type(request) not in JSON_TYPES:
            raise HttpError(415, f"Content-Type {media_type(request)!r}: send application/json "
                                 f"(or Triton binary tensors with Inference-Header-Content-Length)")
        body = await read_body(request, settings.max_body_bytes, settings.read_timeout_s, settings.request_timeout_s)
        header_length = request.headers.get(HEADER_LENGTH)
        if len(body) <= INLINE_BODY_BYTES:
            req, x = decode_infer(body, header_length, model, settings)
        else:  # JSON of 8 MiB takes ~0.66 s to parse: keep the event loop free, and bound the memory
            async with heavy:
                req, x = await run_in_threadpool(decode_infer, body, header_length, model, settings)
        content, header_length = infer_response(req, model, await bounded_infer(hub, model, x, heavy))
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    @app.post("/v2/models/{name}/predict", summary="classify one uploaded image (PNG, JPEG, PPM)",
              openapi_extra=PREDICT_BODY)
    async def predict(name: str, request: Request,
                      top_k_: Optional[int] = Query(None, alias="top_k", ge=1, le=MAX_TOP_K)) -> dict[str, Any]:
        return await predict_upload(hub, name, request, top_k_, heavy)


async def predict_upload(hub: Hub, name: str, request: Request, k: Optional[int],
                         heavy: asyncio.Semaphore) -> dict[str, Any]:
    """POST /v2/models/{name}/predict: one uploaded image -> its top-k classes."""
    model = find_model(hub, name)
    data = await read_upload(request, hub.settings)
    logits = await upload_logits(hub, model, data, heavy)
    k = min(k or hub.settings.top_k, model.info.num_classes)
    return {"model_name": name, "model_version": VERSION, "predictions": top_k(logits[0], k, model.info.class_names,
                                                                               model.info.temperature)}
