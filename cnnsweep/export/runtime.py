"""ONNX Runtime sessions for exported models: checks before ORT sees a file, provider choice, threads.

`export.runner.OnnxRunner` is built on these; everything that runs a model goes through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import OnnxModelInfo, parse_metadata
from cnnsweep.export.model_file import check_graph, parse_model, read_model_bytes, refuse_external_data


def select_providers(device: str = "auto") -> list[str]:
    """CUDA when asked for (or `auto`) and onnxruntime-gpu provides it; CPU always as the fallback."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, got {device!r}")
    available = ort.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ValueError("device cuda: onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    return ["CPUExecutionProvider"]


def ort_session(data: bytes, num_threads: Optional[int], device: str, spin: bool):
    """inter-op threads stay at 1 and execution is sequential: these CNNs are a chain of ops, so
    parallelism inside each op is the only kind that helps, and extra pools only contend for cores.
    `spin=False` stops idle worker threads from busy-waiting for the next op: a server shares its
    cores with the HTTP proxy and request parsing, which spinning threads would starve."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if num_threads:
        opts.intra_op_num_threads = int(num_threads)
    opts.log_severity_level = 3  # errors only: the QDQ/optimizer notices are not for users
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, sess_options=opts, providers=select_providers(device))


def load_session(source: str | Path | bytes, num_threads: Optional[int] = None, device: str = "auto",
                 spin: bool = True, where: Optional[str] = None) -> tuple[Any, OnnxModelInfo]:
    """(session, metadata) of a cnnsweep export, for everything that serves or predicts with one.

    Before ORT sees the model: no external data, metadata that parses within its bounds, and a graph
    whose input and output shapes are the ones the metadata promises. Every failure, ORT's own
    included, is one ExportError line.
    """
    where = where or ("model bytes" if isinstance(source, bytes) else str(source))
    data = source if isinstance(source, bytes) else read_model_bytes(source)
    proto = parse_model(data, where)
    refuse_external_data(proto, where)
    info = parse_metadata({p.key: p.value for p in proto.metadata_props}, where=where)
    check_graph(proto, info, where)
    try:
        return ort_session(data, num_threads, device, spin), info
    except ValueError as err:  # select_providers: device cuda without onnxruntime-gpu
        raise ExportError(str(err)) from None
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types for a broken graph
        raise ExportError(f"{where}: ONNX Runtime cannot load it ({type(err).__name__}: {err})") from None
