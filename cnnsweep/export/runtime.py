"""ONNX Runtime sessions for exported models: provider choice, threads, batched inference.

Shared by export verification, int8 evaluation, the server and the benchmarks, so all of them
run the model the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnsweep.export.errors import ExportError
from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo, parse_metadata
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


def create_session(path: str | Path | bytes, num_threads: Optional[int] = None, device: str = "auto",
                   spin: bool = True):
    """An InferenceSession with `num_threads` intra-op threads (None = ORT's default: one per core).

    The model (a file, or its bytes as shipped to a Ray worker) is read once, refused if it names
    external data, and handed to ORT as those same bytes: ORT never opens a file itself.
    inter-op threads stay at 1 and execution is sequential: these CNNs are a chain of ops, so
    parallelism inside each op is the only kind that helps, and extra pools only contend for cores.
    `spin=False` stops idle worker threads from busy-waiting for the next op: a server shares its
    cores with the HTTP proxy and request parsing, which spinning threads would starve.
    """
    where = "model bytes" if isinstance(path, bytes) else str(path)
    data = path if isinstance(path, bytes) else read_model_bytes(path)
    refuse_external_data(parse_model(data, where), where)
    return _ort_session(data, num_threads, device, spin)


def _ort_session(data: bytes, num_threads: Optional[int], device: str, spin: bool):
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
        return _ort_session(data, num_threads, device, spin), info
    except ValueError as err:  # select_providers: device cuda without onnxruntime-gpu
        raise ExportError(str(err)) from None
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types for a broken graph
        raise ExportError(f"{where}: ONNX Runtime cannot load it ({type(err).__name__}: {err})") from None


def session_info(session, where: str = "model") -> OnnxModelInfo:
    """The cnnsweep metadata carried by a session's model (no `onnx` import needed)."""
    return parse_metadata(session.get_modelmeta().custom_metadata_map, where=where)


def run_logits(session, x: np.ndarray) -> np.ndarray:
    """float32 N x C x H x W (normalized) -> float32 N x num_classes logits."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def batched_logits(session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """run_logits over a large array in slices (bounded memory for big validation splits)."""
    parts = [run_logits(session, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def onnx_accuracy(session, x: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of the ONNX model on normalized images."""
    pred = batched_logits(session, x, batch_size).argmax(axis=1)
    return float((pred == np.asarray(labels)).mean()) if len(pred) else float("nan")
