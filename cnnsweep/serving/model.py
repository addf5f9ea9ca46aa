"""One served model: a name, its file, and the OnnxRunner that runs it.

No Ray here: a replica holds a dict of these; tests and benchmarks can use them in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnsweep.export import INPUT_NAME, ExportError, OnnxModelInfo, OnnxRunner
from cnnsweep.serving.settings import ModelSpec, ServeConfigError, ServeSettings

PLATFORM = "onnxruntime_onnx"  # what Triton reports for ONNX models
VERSION = "1"  # one version per served name


@dataclass
class ServedModel:
    name: str
    path: Path
    runner: OnnxRunner  # the session and whatever preprocessing the graph leaves outside

    @property
    def info(self) -> OnnxModelInfo:
        return self.runner.info

    @property
    def provider(self) -> str:
        return self.runner.provider

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C raw pixels -> float32 logits N x K. Thread-safe (ORT sessions are)."""
        return self.runner.logits(pixels)

    def metadata(self) -> dict:
        """The OIP model metadata response (plus `parameters` with the labels and preprocessing)."""
        k = self.info.num_classes
        return {"name": self.name, "versions": [VERSION], "platform": PLATFORM,
                "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, -1, -1, self.runner.channels]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, k]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]}],
                "parameters": {"class_names": self.info.class_names, "precision": self.info.precision,
                               "preprocess": self.info.preprocess.to_dict(), "metrics": self.info.metrics,
                               "temperature": self.info.temperature, "provider": self.provider,
                               "input_note": "UINT8 [N,H,W,C] raw pixels of any size (C: 1, 3 or 4); "
                                             "other sizes are resized to the model's with the training "
                                             "code, then the model file converts, equalizes and "
                                             "normalizes them itself",
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
    try:  # no external data, metadata checked against the graph, ORT errors as one line
        runner = OnnxRunner.load(path, num_threads=num_threads, device=device, spin=False)
    except ExportError as err:
        raise ServeConfigError(str(err)) from None
    return ServedModel(spec.served_name, path, runner)


def load_served_models(settings: ServeSettings) -> dict[str, ServedModel]:
    return {m.served_name: load_served_model(m, settings.threads, settings.device) for m in settings.models}
