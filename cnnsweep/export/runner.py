"""`OnnxRunner`: the one way cnnsweep runs an exported model (server, `predict`, `analyze`, export checks).

An ONNX Runtime session over the file's bytes, plus the documented pre-steps the graph leaves outside
(`transforms.pixels.split_for_graph`): alpha dropped; images of another size converted and resized to
the model's with the training functions; for CLAHE models, the training `prepare`. Everything else,
grayscale, global equalization and normalization, is inside the .onnx file.

Picklable: the Ray paths ship one runner to each worker, which rebuilds the session from the bytes
(sessions themselves do not pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from cnnsweep.export.metadata import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo
from cnnsweep.export.runtime import load_session, ort_session
from cnnsweep.transforms.color import match_channels, resize
from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.pixels import split_for_graph

DEFAULT_BATCH = 256  # images per ORT call when running a whole split (bounds memory)


@dataclass
class OnnxRunner:
    data: bytes  # the model file's bytes, checked by load_session
    info: OnnxModelInfo
    where: str = "model"
    num_threads: Optional[int] = None  # ORT intra-op threads; None = one per core
    device: str = "cpu"
    spin: bool = True  # False in servers: idle ORT threads must not busy-wait on cores the proxy needs
    _session: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, source: str | Path | bytes, num_threads: Optional[int] = None, device: str = "cpu",
             spin: bool = True, where: Optional[str] = None) -> "OnnxRunner":
        """Read and check the file (ExportError, one line, on anything wrong) and open its session."""
        from cnnsweep.export.model_file import read_model_bytes

        where = where or ("model bytes" if isinstance(source, bytes) else str(source))
        data = source if isinstance(source, bytes) else read_model_bytes(source)
        session, info = load_session(data, num_threads=num_threads, device=device, spin=spin, where=where)
        return cls(data, info, where, num_threads, device, spin, session)

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("data", "info", "where", "num_threads", "device", "spin")}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def session(self) -> Any:
        if self._session is None:  # after unpickling: the bytes were checked where the runner was loaded
            self._session = ort_session(self.data, self.num_threads, self.device, self.spin)
        return self._session

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def channels(self) -> int:
        """Channels of the pixels the graph reads: the training images' (3 RGB, 1 gray)."""
        return self.info.input_channels

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the pixels the graph reads; the runner resizes other sizes first."""
        return self.info.preprocess.output_size

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C (C in 1, 3, 4; any H x W) -> float32 logits N x num_classes."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: self.graph_input(pixels)})[0]

    @cached_property
    def _split(self) -> tuple[Optional[Preprocess], Preprocess]:
        """split_for_graph of the model's preprocessing, once: graph_input runs per request."""
        return split_for_graph(self.info.preprocess)

    def graph_input(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels -> what the graph's `image` input takes: uint8 N x H x W x C at the model's size."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] not in (1, 3, 4):
            raise ValueError(f"pixels: expected uint8 N x H x W x C with C in 1, 3, 4; got {pixels.dtype} "
                             f"{tuple(pixels.shape)}")
        pre = self.info.preprocess
        pre_step, in_graph = self._split
        fits = pixels.shape[1:] == (*in_graph.source_size, in_graph.source_channels)
        if pre_step is None and fits:
            return np.ascontiguousarray(pixels)
        with torch.inference_mode():
            # writable for torch.from_numpy: request bodies decode to read-only arrays (copied only then)
            x = torch.from_numpy(np.require(pixels[..., :3], requirements=["C", "W"])).permute(0, 3, 1, 2)
            if pre_step is not None:
                x = pre_step.prepare(x)
            else:  # training's order (channels, then resize); a gray image repeated to RGB keeps its luma
                x = resize(match_channels(x, pre.in_channels), pre.output_size)
                x = match_channels(x, in_graph.source_channels)
            return x.permute(0, 2, 3, 1).contiguous().numpy()

    def logits_of(self, batches: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Several uint8 N_i x H_i x W_i x C_i arrays -> their logits, concatenated in order. Arrays of one
        shape run together (at most `batch_size` images per ORT call); each shape is its own graph run."""
        if not batches:
            return np.zeros((0, self.info.num_classes), np.float32)
        groups: dict[tuple, list[int]] = {}
        for i, b in enumerate(batches):
            groups.setdefault(tuple(b.shape[1:]), []).append(i)
        out: list = [None] * len(batches)
        for members in groups.values():
            x = np.concatenate([batches[i] for i in members])
            logits = np.concatenate([self.logits(x[j:j + batch_size]) for j in range(0, len(x), batch_size)])
            for i, rows in zip(members, np.split(logits, np.cumsum([len(batches[i]) for i in members])[:-1])):
                out[i] = rows
        return np.concatenate(out)

    def split_logits(self, images: torch.Tensor, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """A dataset split's uint8 N x C x H x W tensor -> logits, `batch_size` images per ORT call."""
        parts = [self.logits(images[i:i + batch_size].permute(0, 2, 3, 1).numpy())
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.num_classes), np.float32)

    def accuracy(self, split, batch_size: int = DEFAULT_BATCH) -> float:
        """Top-1 accuracy on a dataset split (its uint8 images and labels)."""
        pred = self.split_logits(split.images, batch_size).argmax(axis=1)
        return float((pred == split.labels.numpy()).mean()) if len(pred) else float("nan")
