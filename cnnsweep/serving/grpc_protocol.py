"""The Open Inference Protocol v2 over gRPC (KServe / Triton `inference.GRPCInferenceService`): tensors
in, tensors out, protobuf messages from `tritonclient.grpc.service_pb2`. No Ray, no server here:
parsing, checks and answers only (`grpc_service` runs them for a hub).

The same rules as the REST protocol (`protocol`), through the same checks:
  one input, the model file's own: "image" UINT8 [N, H, W, C] raw pixels (the graph preprocesses);
  values in `raw_input_contents[0]` (what tritonclient sends) or in `contents`;
  outputs "logits" (default) and "probabilities" as little-endian FP32 in `raw_output_contents`,
  or, with parameters.classification = k, Triton's BYTES "score:index:label" top k.
A client mistake is a `GrpcError` (INVALID_ARGUMENT, NOT_FOUND), never INTERNAL.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from cnnsweep.serving.grpc_messages import pb

from cnnsweep.serving.http_error import HttpError
from cnnsweep.serving.model import VERSION, ServedModel
from cnnsweep.serving.protocol import check_input_name, check_tensor_header, pixel_input
from cnnsweep.serving.responses import OUTPUT, bytes_tensor, classification_k, classify, output_values
from cnnsweep.serving.settings import ServeSettings

SERVER_NAME = "cnnsweep"
EXTENSIONS = ["classification"]
# HTTP statuses of the shared checks -> gRPC codes. 413 (over a size limit) is the client's argument,
# not a server resource running out: retrying the same request cannot succeed.
STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
                413: grpc.StatusCode.INVALID_ARGUMENT}


class GrpcError(Exception):
    """A client mistake, answered with `code` and `message` as the call's status (and an empty reply)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_http(cls, err: HttpError) -> "GrpcError":
        return cls(STATUS_CODES.get(err.status, grpc.StatusCode.INVALID_ARGUMENT), err.message)


def parameters(params) -> dict[str, Any]:
    """A protobuf map<string, InferParameter> -> plain {name: value} (bool, int, str or float)."""
    out = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        out[key] = None if kind is None else getattr(p, kind)
    return out


def find_model(models: dict[str, ServedModel], name: str, version: str = "") -> ServedModel:
    model = models.get(name)
    if model is None:
        raise GrpcError(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}; serving {sorted(models)}")
    if version not in ("", VERSION):
        raise GrpcError(grpc.StatusCode.NOT_FOUND, f"model {name!r} has no version {version!r}; versions: [{VERSION!r}]")
    return model


# ---------------------------------------------------------------------------- request


def _raw_values(req: pb.ModelInferRequest, dtype: np.dtype, count: int) -> np.ndarray:
    if len(req.raw_input_contents) != 1:
        raise HttpError(400, f"raw_input_contents has {len(req.raw_input_contents)} entries for 1 input")
    raw = req.raw_input_contents[0]
    if len(raw) != count * dtype.itemsize:
        raise HttpError(400, f"raw_input_contents[0] is {len(raw)} bytes but the shape needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype)


def _typed_values(contents: pb.InferTensorContents, dtype: np.dtype, count: int) -> np.ndarray:
    """`contents.uint_contents` (UINT8: one uint32 per value, as the protocol sends them)."""
    values = np.asarray(contents.uint_contents)
    if values.size != count:
        raise HttpError(400, f"contents has {values.size} values but the shape needs {count}")
    if values.size and values.max() > 255:
        raise HttpError(400, "UINT8 contents must be whole numbers 0..255")
    return values.astype(dtype)


def decode_input(req: pb.ModelInferRequest, max_values: int) -> np.ndarray:
    """The request's one input tensor as an array of its declared shape (HttpError on a bad one)."""
    if len(req.inputs) != 1:
        raise HttpError(400, f"inference request has {len(req.inputs)} inputs; send exactly 1")
    inp = req.inputs[0]
    check_input_name(inp.name)
    shape = list(inp.shape)
    dtype, count = check_tensor_header(inp.name, inp.datatype, shape, max_values)
    if req.raw_input_contents:
        values = _raw_values(req, dtype, count)
    else:
        values = _typed_values(inp.contents, dtype, count)
    return values.reshape(shape)


def model_input(req: pb.ModelInferRequest, model: ServedModel, settings: ServeSettings) -> np.ndarray:
    """The request's tensor as uint8 N x H x W x C pixels, with the checks of the REST protocol."""
    try:
        return pixel_input(decode_input(req, settings.max_body_bytes), settings)
    except HttpError as err:
        raise GrpcError.from_http(err) from None


# ---------------------------------------------------------------------------- responses


def _output(name: str, params: dict, logits: np.ndarray, model: ServedModel) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    tensor = output_values(name, logits, model.info.temperature)
    k = classification_k(params, model.info.num_classes)
    if k is None:
        meta = pb.ModelInferResponse.InferOutputTensor(name=name, datatype="FP32", shape=tensor.shape)
        return meta, tensor.astype("<f4", copy=False).tobytes()
    labels = classify(tensor, k, model.info.class_names)
    return pb.ModelInferResponse.InferOutputTensor(name=name, datatype="BYTES", shape=labels.shape), bytes_tensor(labels)


def infer_response(req: pb.ModelInferRequest, model: ServedModel, logits: np.ndarray) -> pb.ModelInferResponse:
    """The requested outputs (default: logits) of `logits` N x K, as raw little-endian tensors."""
    specs = [(o.name, parameters(o.parameters)) for o in req.outputs] or [(OUTPUT, {})]
    if len({name for name, _ in specs}) != len(specs):
        raise GrpcError(grpc.StatusCode.INVALID_ARGUMENT, "each output may be requested once")
    try:
        outputs = [_output(name, params, logits, model) for name, params in specs]
    except HttpError as err:
        raise GrpcError.from_http(err) from None
    return pb.ModelInferResponse(model_name=model.name, model_version=VERSION, id=req.id,
                                 outputs=[meta for meta, _ in outputs],
                                 raw_output_contents=[raw for _, raw in outputs])


def _tensors(entries: list[dict]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
            for t in entries]


def metadata_response(model: ServedModel) -> pb.ModelMetadataResponse:
    """Name, versions, platform and tensors of the REST metadata (gRPC's message has no `parameters`)."""
    meta = model.metadata()
    return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                    inputs=_tensors(meta["inputs"]), outputs=_tensors(meta["outputs"]))


def server_metadata_response() -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=SERVER_NAME, version=VERSION, extensions=EXTENSIONS)


def model_ready_response(models: dict[str, ServedModel], name: str, version: str = "") -> pb.ModelReadyResponse:
    """Like Triton: an unknown model (or version) is `ready: false`, not an error."""
    try:
        find_model(models, name, version)
    except GrpcError:
        return pb.ModelReadyResponse(ready=False)
    return pb.ModelReadyResponse(ready=True)


def empty_response(method: str) -> Any:
    """The reply message type of `method`, empty: what goes back with an error status."""
    return getattr(pb, f"{method}Response")()
