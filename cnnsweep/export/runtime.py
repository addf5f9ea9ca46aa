"""ONNX Runtime sessions for exported models: provider choice, threads, batched inference.

Shared by export verification, int8 evaluation, the server and the benchmarks, so all of them
run the model the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo, parse_metadata


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

    inter-op threads stay at 1 and execution is sequential: these CNNs are a chain of ops, so
    parallelism inside each op is the only kind that helps, and extra pools only contend for cores.
    `spin=False` stops idle worker threads from busy-waiting for the next op: a server shares its
    cores with the HTTP proxy and request parsing, which spinning threads would starve.
    """
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
    model = path if isinstance(path, bytes) else str(path)  # bytes: a model shipped to a Ray worker
    return ort.InferenceSession(model, sess_options=opts, providers=select_providers(device))


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
