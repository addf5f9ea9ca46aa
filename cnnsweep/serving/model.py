"""One served model: its ONNX Runtime session plus the training-time Preprocess from its metadata.

No Ray here: a replica holds a dict of these; tests and benchmarks can use them in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnsweep.export import ExportError, OnnxModelInfo, load_session, run_logits
from cnnsweep.serving.settings import ModelSpec, ServeConfigError, ServeSettings

PLATFORM = "onnxruntime_onnx"  # what Triton reports for ONNX models
VERSION = "1"  # one version per served name


@dataclass
class ServedModel:
    name: str
    path: Path
    info: OnnxModelInfo
    session: object  # onnxruntime.InferenceSession

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 N x C x H x W (normalized) -> float32 logits N x K. Thread-safe (ORT sessions are)."""
        return run_logits(self.session, x)

    @property
    def native_pixels_shape(self) -> tuple[int, ...]:
        """Shape of one decoded upload at the training images' own size: H x W x 3 (RGB) or H x W (gray).
        Uploads of this shape are stacked and preprocessed once per batch (`run_pixels`)."""
        h, w = self.info.preprocess.source_size
        return (h, w, 3) if self.info.preprocess.source_channels == 3 else (h, w)

    def run_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x native_pixels_shape -> logits N x K: one preprocessing call and one ORT run per batch
        (per-request torch calls each hold the event loop; BENCHMARKS.md has what they cost)."""
        if pixels.ndim == 3:  # N x H x W gray: prepare_hwc would read it as one H x W x C image
            pixels = pixels[..., None]
        return self.run(self.prepare_pixels(pixels))

    def prepare_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Raw uint8 pixels (H x W, H x W x C or N x H x W x C) -> model input, with the training code."""
        pre = self.info.preprocess
        with torch.inference_mode():
            return pre.normalize(pre.prepare_hwc(pixels)).numpy()

    def metadata(self) -> dict:
        """The OIP model metadata response (plus `parameters` with the labels and preprocessing)."""
        c, h, w = self.info.input_shape
        return {"name": self.name, "versions": [VERSION], "platform": PLATFORM,
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, c, h, w]},
                           {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, -1]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, self.info.num_classes]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, self.info.num_classes]}],
                "parameters": {"class_names": self.info.class_names, "precision": self.info.precision,
                               "preprocess": self.info.preprocess.to_dict(), "metrics": self.info.metrics,
                               "provider": self.provider,
                               "input_note": "FP32 [N,C,H,W] is the normalized model input; UINT8 "
                                             "[N,H,W,C] raw pixels are preprocessed by the server",
                               **self.ensemble_parameters()}}

    def ensemble_parameters(self) -> dict:
        """An ensemble's members (trial id, metrics, config summary) and how they are combined; {} otherwise."""
        ens = self.info.ensemble
        if ens is None:
            return {}
        members = [{k: m.get(k) for k in ("rank", "trial_id", "metrics", "config")} for m in ens["members"]]
        return {"ensemble": {"num_members": len(members), "combine": ens.get("combine"),
                             "output": ens.get("output"), "members": members}}


def load_served_model(spec: ModelSpec, num_threads: int, device: str = "auto") -> ServedModel:
    path = Path(spec.path)
    if not path.is_file():
        raise ServeConfigError(f"{path}: model file not found")
    try:  # load_session: no external data, metadata checked against the graph, ORT errors as one line
        session, info = load_session(path, num_threads=num_threads, device=device, spin=False)
    except ExportError as err:
        raise ServeConfigError(str(err)) from None
    return ServedModel(spec.served_name, path, info, session)


def load_served_models(settings: ServeSettings) -> dict[str, ServedModel]:
    return {m.served_name: load_served_model(m, settings.threads, settings.device) for m in settings.models}
