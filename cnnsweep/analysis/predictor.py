"""Predictors: uint8 images in, logits out, for a PyTorch model or an ONNX file.

Both are picklable (the Ray path ships one to every worker with ray.put): the ONNX Runtime session is
rebuilt lazily in each process from the file's bytes, since sessions themselves do not pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class TorchPredictor:
    model: nn.Module  # eval mode, on the CPU
    preprocess: Any  # cnnsweep.transforms.Preprocess

    @torch.inference_mode()
    def logits(self, images_uint8: torch.Tensor) -> np.ndarray:
        """uint8 N x C x H x W -> float32 N x num_classes, through the training-time Preprocess."""
        self.model.eval()
        return self.model(self.preprocess(images_uint8)).float().numpy()


@dataclass
class OnnxPredictor:
    """ONNX Runtime with the preprocessing the server uses: raw N x H x W x C pixels -> prepare_hwc ->
    normalize (cnnsweep.serving.model.ServedModel.prepare_pixels does the same two calls)."""

    onnx_bytes: bytes
    preprocess: Any
    num_threads: int = 1  # one intra-op thread: Ray workers and tests share the cores
    _session: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"onnx_bytes": self.onnx_bytes, "preprocess": self.preprocess, "num_threads": self.num_threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def session(self) -> Any:
        if self._session is None:
            from cnnsweep.export.runtime import create_session

            self._session = create_session(self.onnx_bytes, num_threads=self.num_threads, device="cpu")
        return self._session

    def logits(self, images_uint8: torch.Tensor) -> np.ndarray:
        from cnnsweep.export.runtime import run_logits

        pixels = images_uint8.permute(0, 2, 3, 1).numpy()  # N x H x W x C, what an upload decodes to
        with torch.inference_mode():
            x = self.preprocess.normalize(self.preprocess.prepare_hwc(pixels)).numpy()
        return run_logits(self.session, x)
