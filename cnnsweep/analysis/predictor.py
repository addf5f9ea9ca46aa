"""`TorchPredictor`: a checkpoint's model behind the same call as `cnnsweep.export.OnnxRunner`, so the
analysis runs either kind: `split_logits(uint8 N x C x H x W images) -> logits`, through the model's
own training-time preprocessing. Picklable (the Ray path ships one to every worker with ray.put).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

DEFAULT_BATCH = 256  # images per forward pass (bounds memory on large splits)


@dataclass
class TorchPredictor:
    model: nn.Module  # eval mode, on the CPU
    preprocess: Any  # cnnsweep.transforms.Preprocess

    @torch.inference_mode()
    def split_logits(self, images: torch.Tensor, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """uint8 N x C x H x W -> float32 N x num_classes, through the training-time Preprocess."""
        self.model.eval()
        parts = [self.model(self.preprocess(images[i:i + batch_size])).float().numpy()
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
