"""PyTorch model -> one self-contained .onnx file: raw uint8 pixels at the model's size in (any batch),
the training preprocessing and the network inside, logits out, cnnsweep metadata attached.

Exporter: torch.onnx.export(dynamo=True), the default in torch 2.9+. The legacy TorchScript exporter
is deprecated (it warns on every call); the dynamo path gives a clean opset-20 graph with BatchNorm
folded into the convolutions (its `optimize` pass) and a named symbolic batch dim. It writes weights
to a side file (`model.onnx.data`) by default, so we take its in-memory ModelProto instead, add
metadata, check it and save it ourselves with every initializer inline: one file, nothing beside it.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from cnnsweep.atomic import atomic_write_bytes
from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo, set_metadata
from cnnsweep.export.model_file import MAX_ONNX_BYTES
from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.pixels import PixelClassifier, split_for_graph

EXAMPLE_BATCH = 2  # torch.export specializes a batch of 1 to a constant; 2 keeps the dim symbolic


def pixel_classifier(model: torch.nn.Module, pre: Preprocess) -> PixelClassifier:
    """The module the .onnx file holds: the in-graph part of `pre`, then `model` (eval mode, CPU)."""
    return PixelClassifier(split_for_graph(pre)[1], model.to("cpu").eval()).eval()


def torch_to_onnx(module: torch.nn.Module, input_channels: int, size: tuple[int, int]) -> Any:
    """Trace a PixelClassifier to an onnx.ModelProto with input `image` uint8 [batch, H, W, C]."""
    h, w = size
    example = torch.zeros(EXAMPLE_BATCH, h, w, input_channels, dtype=torch.uint8)
    dims = {0: torch.export.Dim("batch", min=1, max=1 << 20)}
    # The exporter narrates its progress on stdout; keep stdout for `--json` output.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=(dims,), dynamo=True, external_data=False,
                                        optimize=True, verbose=False)
        except Exception as err:  # torch.export raises many types; all mean "this model did not trace"
            raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from err
    return program.model_proto


def check_onnx(model_proto: Any) -> None:
    """onnx.checker with full_check (types and shapes inferred through the whole graph)."""
    import onnx

    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"onnx.checker rejected the exported model: {err}") from None
    names_in = [i.name for i in model_proto.graph.input]
    names_out = [o.name for o in model_proto.graph.output]
    if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
        raise ExportError(f"exported graph has inputs {names_in} / outputs {names_out}; "
                          f"expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]")
    if model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value:  # a fixed number, not a name
        raise ExportError("exported graph has a fixed batch size; expected a dynamic batch dimension")


def save_onnx(model_proto: Any, path: str | Path) -> Path:
    """Write a single-file .onnx atomically (cnnsweep.atomic: a failed write leaves the old file and no
    temp file); refuse sizes that need external data."""
    size = model_proto.ByteSize()
    if size > MAX_ONNX_BYTES:
        raise ExportError(f"model is {size / 2**30:.1f} GiB: over the 2 GiB single-file protobuf limit")
    # Serialized here, not by onnx.save_model: that one may move large tensors to a side file.
    return atomic_write_bytes(path, model_proto.SerializeToString())


def export_onnx(model: torch.nn.Module, info: OnnxModelInfo, path: str | Path) -> Path:
    """Export `model` behind its in-graph preprocessing (info.preprocess), attach metadata, check, save."""
    in_graph = split_for_graph(info.preprocess)[1]
    proto = torch_to_onnx(pixel_classifier(model, info.preprocess), in_graph.source_channels, in_graph.source_size)
    set_metadata(proto, info)
    check_onnx(proto)
    return save_onnx(proto, path)


def rewrite_metadata(path: str | Path, info: OnnxModelInfo) -> Path:
    """Replace the metadata of a saved export (same graph, e.g. with metrics measured on it)."""
    import onnx

    proto = onnx.load(str(path))
    set_metadata(proto, info)
    return save_onnx(proto, path)
