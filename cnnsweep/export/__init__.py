"""ONNX export with self-checks and optional int8 quantization. Pure torch/onnx/onnxruntime: no Ray.

Layout: onnx_export (torch -> single-file .onnx), metadata (what travels inside it), model_file
(an .onnx as untrusted input), runtime (ORT sessions), runner (the one way to run an export), verify (ORT vs PyTorch), quantize (static
int8), sources (what PATH means), pipeline (the whole `cnnsweep export`).
"""

from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo, parse_metadata, read_metadata
from cnnsweep.export.onnx_export import export_onnx
from cnnsweep.export.pipeline import ExportReport, export_best, export_checkpoint, export_path
from cnnsweep.export.quantize import quantize_int8
from cnnsweep.export.runner import OnnxRunner
from cnnsweep.export.runtime import load_session
from cnnsweep.export.sources import ExportSource, resolve_sources
from cnnsweep.export.verify import VerifyReport, verify_session

__all__ = ["ExportError", "ExportReport", "ExportSource", "INPUT_NAME", "OUTPUT_NAME", "OnnxModelInfo",
           "OnnxRunner", "VerifyReport", "export_best", "export_checkpoint", "export_onnx", "export_path",
           "load_session", "parse_metadata", "quantize_int8", "read_metadata", "resolve_sources", "verify_session"]
