"""An .onnx file as untrusted input: read it with a size bound, refuse anything that would make ONNX
Runtime read other files, and check that its cnnsweep metadata describes its graph.

ONNX lets a tensor keep its bytes in a side file (`external_data`: location, offset, length), which
ONNX Runtime resolves relative to the model's folder (or the working folder for a model given as
bytes). A planted model could name any file there and the server would return its bytes as logits.
cnnsweep never writes external data (onnx_export saves every tensor inline), so any is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterator

from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo

# The protobuf limit: above it ONNX needs external data, which the "one file" contract rules out.
MAX_ONNX_BYTES = 2 * 1024**3


def read_model_bytes(path: str | Path) -> bytes:
    """The bytes of a model file: a plain file of at most MAX_ONNX_BYTES (a FIFO or /dev/zero is refused)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ExportError(f"{path}: not a plain file")
            if st.st_size > MAX_ONNX_BYTES:
                raise ExportError(f"{path}: {st.st_size / 2**30:.1f} GiB is over the 2 GiB single-file ONNX limit")
            return f.read(MAX_ONNX_BYTES + 1)
    except OSError as err:
        raise ExportError(f"{path}: cannot read it ({err.strerror or err})") from None


def parse_model(data: bytes, where: str) -> Any:
    """bytes -> onnx.ModelProto with a graph (nothing outside the bytes is read)."""
    import onnx
    from google.protobuf.message import DecodeError

    if len(data) > MAX_ONNX_BYTES:
        raise ExportError(f"{where}: {len(data) / 2**30:.1f} GiB is over the 2 GiB single-file ONNX limit")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ExportError(f"{where}: cannot load it: not an ONNX model ({type(err).__name__})") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ExportError(f"{where}: cannot load it: not an ONNX model (no graph)")
    return proto


def _tensors(message: Any) -> Iterator[Any]:
    """Every TensorProto inside a protobuf message: initializers, sparse tensors, node attributes,
    subgraphs (If/Loop/Scan), functions and training graphs, found by walking the fields."""
    import onnx

    if isinstance(message, onnx.TensorProto):
        yield message
        return
    for desc, value in message.ListFields():
        if desc.message_type is None:
            continue  # a scalar, string or bytes field: no tensor inside
        for item in [value] if hasattr(value, "ListFields") else value:  # one message or a repeated field
            yield from _tensors(item)


def refuse_external_data(proto: Any, where: str) -> None:
    """ExportError when any tensor of the model keeps its bytes outside the file."""
    import onnx

    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            name = tensor.name or "(unnamed)"
            raise ExportError(f"{where}: tensor {name!r} names external data (a file beside the model): "
                              "refused; cnnsweep exports keep every weight inside the .onnx file")


def _dims(value_info: Any) -> tuple:
    """A graph input/output's shape: ints for fixed dims, names for symbolic ones."""
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in value_info.type.tensor_type.shape.dim)


def check_graph(proto: Any, info: OnnxModelInfo, where: str) -> None:
    """The metadata must describe the graph: uint8 `image` [N, H, W, C] with H x W = the metadata's
    image size and C its input channels, float32 `logits` [N, num_classes]. Otherwise the server would shape its inputs and label
    its outputs from numbers the model does not have."""
    import onnx

    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    names_in, names_out = [i.name for i in inputs], [o.name for o in proto.graph.output]
    if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
        raise ExportError(f"{where}: the graph has inputs {names_in} and outputs {names_out}; a cnnsweep "
                          f"export has [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise ExportError(f"{where}: the graph's input must be a uint8 tensor (raw pixels)")
    if proto.graph.output[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError(f"{where}: the graph's output must be a float32 tensor (logits)")
    got_in, got_out = _dims(inputs[0]), _dims(proto.graph.output[0])
    want = (*info.preprocess.output_size, info.input_channels)
    if len(got_in) != 4 or got_in[1:] != want:
        raise ExportError(f"{where}: the metadata's input H x W x C {want} does not match the graph's input "
                          f"{got_in} (N x H x W x C)")
    if len(got_out) != 2 or got_out[1] != info.num_classes:
        raise ExportError(f"{where}: the metadata names {info.num_classes} classes but the graph's output "
                          f"has shape {got_out}: expected N x {info.num_classes}")
