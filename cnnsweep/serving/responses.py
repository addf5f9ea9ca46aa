"""Answers: OIP inference responses (JSON or Triton binary) and the plain /predict top-k."""

from __future__ import annotations

import json
import struct
from typing import Any, Optional

import numpy as np

from cnnsweep.serving.http_error import bad_request
from cnnsweep.serving.model import VERSION, ServedModel
from cnnsweep.serving.protocol import InferRequest, RequestedOutput

OUTPUT = "logits"  # the default output; "probabilities" = its softmax (what /predict scores are)
OUTPUTS = (OUTPUT, "probabilities")


def classification_k(params: dict[str, Any], num_classes: int) -> Optional[int]:
    k = params.get("classification")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise bad_request(f"parameters.classification must be a whole number >= 1, got {k!r}")
    return min(k, num_classes)  # like Triton: asking for more classes than exist returns them all


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """N x K logits -> N x K float32 softmax(logits / temperature) (float64 inside: the numbers of
    `top_k`); the temperature is the one fitted at export (model metadata), so scores are calibrated."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def output_values(name: str, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The values of output `name` ("logits": the graph's raw output, or calibrated "probabilities");
    400 for any other name."""
    if name not in OUTPUTS:
        raise bad_request(f"unknown output {name!r}; this model has {list(OUTPUTS)}")
    return logits if name == OUTPUT else probabilities(logits, temperature)


def classify(logits: np.ndarray, k: int, class_names: list[str]) -> np.ndarray:
    """N x K logits -> N x k strings "score:index:label", best first (Triton's classification format)."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return np.array([[f"{row[i]:f}:{i}:{class_names[i]}" for i in idx] for row, idx in zip(logits, top)],
                    dtype=object)


def bytes_tensor(values: np.ndarray) -> bytes:
    """Triton's BYTES wire format: each element a 4-byte little-endian length, then its bytes."""
    parts = []
    for s in values.reshape(-1):
        b = s.encode()
        parts += [struct.pack("<I", len(b)), b]
    return b"".join(parts)


def _output(spec: RequestedOutput, logits: np.ndarray, model: ServedModel, binary_default: bool):
    """(JSON entry, binary payload or None) for one requested output."""
    params = spec.parameters or {}
    tensor = output_values(spec.name, logits, model.info.temperature)
    binary = params.get("binary_data", binary_default)
    if not isinstance(binary, bool):
        raise bad_request(f"parameters.binary_data must be true or false, got {binary!r}")
    k = classification_k(params, model.info.num_classes)
    if k is None:
        entry = {"name": spec.name, "datatype": "FP32", "shape": list(tensor.shape)}
        payload = tensor.astype("<f4").tobytes() if binary else None
        values = None if binary else tensor.reshape(-1).tolist()
    else:
        labels = classify(tensor, k, model.info.class_names)
        entry = {"name": spec.name, "datatype": "BYTES", "shape": list(labels.shape)}
        payload = bytes_tensor(labels) if binary else None
        values = None if binary else labels.reshape(-1).tolist()
    if binary:
        entry["parameters"] = {"binary_data_size": len(payload)}
    else:
        entry["data"] = values
    return entry, payload


def infer_response(req: InferRequest, model: ServedModel, logits: np.ndarray) -> tuple[bytes, Optional[int]]:
    """(body, JSON header length or None). A header length means Triton binary: JSON, then raw tensors."""
    binary_default = (req.parameters or {}).get("binary_data_output", False)
    if not isinstance(binary_default, bool):  # bool("false") is True: never guess
        raise bad_request(f"parameters.binary_data_output must be true or false, got {binary_default!r}")
    specs = req.outputs or [RequestedOutput(name=OUTPUT)]
    if len({s.name for s in specs}) != len(specs):
        raise bad_request("each output may be requested once")
    entries, payloads = [], []
    for spec in specs:
        entry, payload = _output(spec, logits, model, binary_default)
        entries.append(entry)
        if payload is not None:
            payloads.append(payload)
    head = {"model_name": model.name, "model_version": VERSION, "outputs": entries}
    if req.id is not None:
        head["id"] = req.id
    header = json.dumps(head).encode()
    if not payloads:
        return header, None
    return header + b"".join(payloads), len(header)


def top_k(logits: np.ndarray, k: int, class_names: list[str], temperature: float = 1.0) -> list[dict[str, Any]]:
    """One image's logits -> [{label, index, score}] with calibrated probabilities, best first."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    idx = np.argsort(-p, kind="stable")[:k]
    return [{"label": class_names[i], "index": int(i), "score": float(p[i])} for i in idx]
