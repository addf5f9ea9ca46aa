"""Export checks itself: ONNX Runtime against PyTorch on real validation images at several batch sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from cnnsweep.errors import ExportError

BATCH_SIZES = (1, 7, 64)  # 1 and an odd size catch batch-dim bugs; 64 is a typical serving batch
ATOL = 1e-4  # max |logit difference| tolerated for fp32
PROB_ATOL = 1e-5  # ensembles: max |probability difference| tolerated (probabilities, 0..1 units)


@dataclass
class BatchCheck:
    batch_size: int
    max_abs_diff: float  # max |logit_ort - logit_torch| over the batch
    agreement: float  # fraction of images whose top-1 class is the same in both


@dataclass
class VerifyReport:
    checks: list[BatchCheck] = field(default_factory=list)
    atol: float = ATOL

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=float("nan"))

    @property
    def agreement(self) -> float:
        return min((c.agreement for c in self.checks), default=float("nan"))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and self.agreement == 1.0 and self.max_abs_diff <= self.atol

    def to_dict(self) -> dict:
        return {"ok": self.ok, "max_abs_diff": self.max_abs_diff, "top1_agreement": self.agreement,
                "atol": self.atol, "batches": [asdict(c) for c in self.checks]}

    def failure_message(self) -> str:
        per_batch = ", ".join(f"batch {c.batch_size}: max|diff| {c.max_abs_diff:.2e}, agreement "
                              f"{c.agreement:.2%}" for c in self.checks)
        return (f"ONNX Runtime does not reproduce PyTorch (needs 100% top-1 agreement and "
                f"max|diff| <= {self.atol:g}): {per_batch}")


class TrainingPath(torch.nn.Module):
    """The reference an export is checked against: the network on the training preprocessing in full,
    uint8 N x H x W x C in. Not the exported module: that one leaves CLAHE to the runner's pre-step, so
    comparing the runner with it would compare CLAHE-equalized pixels with unequalized ones."""

    def __init__(self, model: torch.nn.Module, pre):
        super().__init__()
        self.model, self.pre = model, pre

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.pre(pixels.permute(0, 3, 1, 2)))


def take_wrapped(x: np.ndarray, start: int, n: int) -> np.ndarray:
    """n images starting at `start`, wrapping around (a validation split smaller than 72 still works)."""
    return x[np.arange(start, start + n) % len(x)]


@torch.inference_mode()
def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).float().numpy()  # fp32 on CPU: the reference, no autocast


def verify_session(runner, model: torch.nn.Module, images: np.ndarray, batch_sizes=BATCH_SIZES,
                   atol: float = ATOL) -> VerifyReport:
    """Compare an OnnxRunner with a PyTorch module over uint8 N x H x W x C pixels (`TrainingPath`: the
    training preprocessing and the network) on distinct slices of `images`."""
    if len(images) == 0:
        raise ExportError("verification: the validation split is empty")
    model = model.to("cpu").eval()
    report, start = VerifyReport(atol=atol), 0
    for n in batch_sizes:
        x = take_wrapped(images, start, n)
        start += n
        report.checks.append(compare_batch(_torch_logits(model, x), runner.logits(x), n))
    return report


def compare_batch(ref: np.ndarray, got: np.ndarray, n: int) -> BatchCheck:
    """Max |difference| and top-1 agreement of ONNX outputs `got` against the PyTorch reference `ref`."""
    if got.shape != ref.shape:
        raise ExportError(f"verification: ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {n}")
    diff = float(np.abs(got - ref).max()) if np.isfinite(got).all() else float("inf")
    return BatchCheck(n, diff, float((got.argmax(1) == ref.argmax(1)).mean()))
