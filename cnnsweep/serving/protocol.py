"""The Open Inference Protocol v2 (KServe / Triton REST) for one classifier: parse, check, answer.

Supported: JSON tensors (flat or nested `data`), Triton's binary tensor extension
(`Inference-Header-Content-Length`; inputs with `binary_data_size`, outputs with `binary_data`),
and Triton's classification extension (`"parameters": {"classification": k}` on an output ->
BYTES [N, k] of "score:index:label", score = the raw logit like Triton).
Input: exactly one tensor, the model file's own: `image`, UINT8 [N, H, W, C] raw pixels (any size,
C in 1/3/4); `export.OnnxRunner` resizes other sizes to the model's with the training code, and the
graph converts, equalizes and normalizes them as in training.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from cnnsweep.export.metadata import INPUT_NAME
from cnnsweep.serving.body import declared_int, parse_json
from cnnsweep.serving.http_error import HttpError, bad_request
from cnnsweep.serving.model import ServedModel
from cnnsweep.serving.settings import ServeSettings

HEADER_LENGTH = "inference-header-content-length"
DTYPES = {"UINT8": np.dtype("u1")}  # the model file's own input: raw pixels
INPUT_NAMES = (INPUT_NAME,)
MAX_DIMS = 4  # N x H x W x C (N x H x W gray): numpy itself fails above 64 dims
INT64_MAX = 2 ** 63 - 1  # the protocol's dimensions are int64 (gRPC's shape field is one)


class InferInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[StrictInt]  # strict: true, 1.0 and "1" are not dimensions
    datatype: str
    parameters: Optional[dict[str, Any]] = None
    data: Optional[list[Any]] = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: Optional[dict[str, Any]] = None


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: Optional[list[RequestedOutput]] = None


# ---------------------------------------------------------------------------- request


def parse_infer_request(body: bytes, header_length: Optional[str], max_depth: int) -> tuple[InferRequest, bytes]:
    """(request, binary tail) from a JSON body, or a JSON header + binary tensors (Triton extension)."""
    split = len(body)
    if header_length is not None:
        split = declared_int("Inference-Header-Content-Length", header_length)
        if not 0 < split <= len(body):
            raise bad_request(f"Inference-Header-Content-Length {header_length!r} must be 1..{len(body)}")
    raw = parse_json(body[:split], max_depth)
    if not isinstance(raw, dict):
        raise bad_request("inference request must be a JSON object with `inputs`")
    try:
        return InferRequest.model_validate(raw), body[split:]
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise bad_request(f"inference request: {where}: {first['msg']}" if where else first["msg"]) from None


def _json_values(data: list, dtype: np.dtype, count: int) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise bad_request("`data` is ragged: nested lists must all have the same length") from None
    if arr.dtype.kind not in "iuf":
        raise bad_request(f"`data` must hold numbers only (got {arr.dtype.kind!r} values)")
    arr = arr.reshape(-1)
    if arr.size != count:
        raise bad_request(f"`data` has {arr.size} values but the shape needs {count}")
    if dtype.kind == "u" and arr.size and (arr.min() < 0 or arr.max() > 255 or (arr != np.round(arr)).any()):
        raise bad_request("UINT8 `data` must be whole numbers 0..255")
    return arr.astype(dtype)


def _binary_values(params: dict, tail: memoryview, offset: int, dtype: np.dtype, count: int):
    size = params.get("binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad_request("`binary_data_size` must be a whole number of bytes")
    if size != count * dtype.itemsize:
        raise bad_request(f"binary_data_size is {size} bytes but the shape needs {count * dtype.itemsize}")
    if offset + size > len(tail):
        raise bad_request(f"binary data is {len(tail) - offset} bytes short of binary_data_size {size}")
    return np.frombuffer(tail[offset:offset + size], dtype=dtype), offset + size


def check_tensor_header(name: str, datatype: str, shape: list[int], max_values: int) -> tuple[np.dtype, int]:
    """(numpy dtype, number of values) of a declared input tensor; shared by the REST and gRPC protocols."""
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise bad_request(f"input {name!r}: datatype {datatype!r} is not supported; send UINT8 "
                          f"[N, H, W, C] raw pixels (the model file does the preprocessing)")
    if not 1 <= len(shape) <= MAX_DIMS:
        raise bad_request(f"input {name!r}: shape has {len(shape)} dimensions; expected 3 or 4")
    if any(d < 0 for d in shape):
        raise bad_request(f"input {name!r}: shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > INT64_MAX or max(shape) > INT64_MAX:  # not a big tensor: no tensor at all
        raise bad_request(f"input {name!r}: shape {list(shape)} does not fit int64 (dimensions or their product)")
    if count > max_values:
        raise HttpError(413, f"input {name!r}: shape {list(shape)} is {count:,} values; the limit is {max_values:,}")
    return dtype, count


def decode_tensor(inp: InferInput, tail: bytes, max_values: int) -> np.ndarray:
    """The input's values as an array of its declared shape (UINT8 only)."""
    dtype, count = check_tensor_header(inp.name, inp.datatype, inp.shape, max_values)
    params = inp.parameters or {}
    if "binary_data_size" in params:
        arr, used = _binary_values(params, memoryview(tail), 0, dtype, count)
        if used != len(tail):
            raise bad_request(f"{len(tail) - used} bytes of binary data follow the tensor; expected none")
    elif inp.data is not None:
        arr = _json_values(inp.data, dtype, count)
    else:
        raise bad_request(f"input {inp.name!r}: needs `data` or parameters.binary_data_size")
    return arr.reshape(inp.shape)


def _check_batch(n: int, limit: int) -> None:
    if n < 1:
        raise bad_request("batch is empty: the first dimension must be >= 1")
    if n > limit:
        raise bad_request(f"batch of {n} images is over the limit of {limit} per request")


def model_input(req: InferRequest, tail: bytes, model: ServedModel, settings: ServeSettings) -> np.ndarray:
    """The request's tensor as uint8 N x H x W x C pixels, checked against the model and limits."""
    inp = req.inputs[0]
    check_input_name(inp.name)
    return pixel_input(decode_tensor(inp, tail, settings.max_body_bytes), settings)


def check_input_name(name: str) -> None:
    if name not in INPUT_NAMES:
        raise bad_request(f"unknown input {name!r}; this model takes {INPUT_NAME!r} (UINT8 [N,H,W,C] raw pixels)")


def pixel_input(x: np.ndarray, settings: ServeSettings) -> np.ndarray:
    """A decoded UINT8 tensor -> N x H x W x C pixels (C in 1, 3, 4; N x H x W reads as gray)."""
    if x.ndim == 3:
        x = x[..., None]  # N x H x W gray
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 1:
        raise bad_request(f"UINT8 input must have shape [N, H, W, C] with C in 1, 3, 4; got {list(x.shape)}")
    _check_batch(len(x), settings.max_batch_size)
    if x.shape[1] * x.shape[2] > settings.max_image_pixels:
        raise HttpError(413, f"images are {x.shape[2]}x{x.shape[1]} pixels; the limit is "
                             f"{settings.max_image_pixels:,} per image")
    return np.ascontiguousarray(x)
