"""A top-K ensemble as one PyTorch module: K members, each with its own preprocessing, mean softmax.

The graph's input is raw pixels; a *shared* Preprocess (`plan_shared` below) does the deterministic
steps every member has in common (resize, equalization, grayscale when all members agree), in the
graph like any model's, with normalization switched off (its output = pixels / 255). Each member branch then does what is its own, inside the graph:

- grayscale, when only some members use it: BT.601 luma on the 0..255 integers, rounded half up as
  `transforms.color.luma_uint8` does, so a branch sees exactly the pixels its model was trained on;
- its normalization: (x - mean) / std with the member's own statistics.

Equalization must be the same for every member (it runs in the shared path). Differing modes are
refused with a clear error: CLAHE has no exact ONNX form here, and global equalization commutes with
neither grayscale nor a member's rounding, so running it per branch would not reproduce training.
Mixing grayscale with equalization or with resizing is refused for the same reason (luma after
equalize/resize is not equalize/resize after luma, to the rounding of one grey level).

Output `logits` = log(mean_k softmax(member_k)): any consumer that applies softmax (the server's
top-k, `cnnsweep predict`) gets the ensemble's mean probability back exactly, and argmax is unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import nn

from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.color import LUMA_WEIGHTS


class EnsembleError(ValueError):
    """The members cannot be combined into one graph (bad input: the CLI exits 2)."""


class Luma(nn.Module):
    """float N x 3 x H x W in 0..1 (k/255) -> float N x 1 x H x W in 0..1, exactly `luma_uint8`'s pixels."""

    def __init__(self) -> None:
        super().__init__()
        milli = torch.tensor([round(1000 * w) for w in LUMA_WEIGHTS], dtype=torch.float32)
        self.register_buffer("milli", milli.view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = torch.round(x * 255)  # back to the integer grey levels 0..255 (exact in float32)
        v = (levels * self.milli).sum(dim=1, keepdim=True)  # 1000 x luma, an integer <= 255000: exact
        # (v + 500) / 1000 is never within 1e-3 of an integer unless it is one: floor is exact.
        return torch.floor((v + 500) / 1000).clamp(0, 255) / 255


class MemberBranch(nn.Module):
    """One member: optional in-graph grayscale, its own normalization, its network."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, to_gray: bool):
        super().__init__()
        self.luma = Luma() if to_gray else nn.Identity()
        stats = preprocess.normalize_module()  # this member's mean/std, 0..1 units, shaped 1 x C x 1 x 1
        self.register_buffer("mean", stats.mean)
        self.register_buffer("std", stats.std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is already uint8 / 255 (the shared path's normalize with mean 0, std 1), as in normalize_tensor.
        return self.model((self.luma(x) - self.mean) / self.std)


class Ensemble(nn.Module):
    """Shared input (pixels / 255) -> log of the members' mean softmax probability."""

    def __init__(self, branches: Sequence[MemberBranch]):
        super().__init__()
        if not branches:
            raise EnsembleError("an ensemble needs at least one member")
        self.branches = nn.ModuleList(branches)
        self.log_k = math.log(len(branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(b(x).float(), dim=1) for b in self.branches])
        return torch.logsumexp(logp, dim=0) - self.log_k  # log mean p, without underflow to -inf


def _same(members: Sequence[Preprocess], attr: str) -> bool:
    return len({getattr(p, attr) for p in members}) == 1


def _refuse(members: Sequence[Preprocess], attr: str, why: str) -> None:
    values = ", ".join(f"member {i + 1}: {getattr(p, attr)!r}" for i, p in enumerate(members))
    raise EnsembleError(f"cannot ensemble these members: {why} ({attr}: {values})")


def plan_shared(members: Sequence[Preprocess]) -> tuple[Preprocess, list[bool]]:
    """The shared Preprocess of the ensemble input and, per member, whether its branch converts to gray."""
    if not members:
        raise EnsembleError("an ensemble needs at least one member")
    for attr in ("source_channels", "output_size"):
        if not _same(members, attr):
            _refuse(members, attr, "members must read the same images at the same size")
    if not (_same(members, "equalize") and _same(members, "clahe_clip") and _same(members, "clahe_grid")):
        _refuse(members, "equalize", "equalization must be the same for every member (it is not reproducible "
                                     "per branch in ONNX; CLAHE not at all)")
    all_gray = all(p.grayscale for p in members)
    mixed = not all_gray and any(p.grayscale for p in members)
    if mixed and members[0].equalize != "none":
        _refuse(members, "grayscale", "grayscale and colour members cannot share an equalization")
    if mixed and any(p.resize_to and tuple(p.source_size) != p.output_size for p in members):
        _refuse(members, "grayscale", "grayscale and colour members cannot share a resize")
    first = members[0]
    channels = 1 if all_gray else first.source_channels
    shared = dataclasses.replace(first, grayscale=all_gray, standardize=False,
                                 mean=(0.0,) * channels, std=(1.0,) * channels)
    return shared, [p.grayscale and channels == 3 for p in members]


def build_ensemble(models: Sequence[nn.Module], preprocesses: Sequence[Preprocess]) -> tuple[Ensemble, Preprocess]:
    """The ensemble module (eval mode) and the shared Preprocess its input comes from."""
    shared, to_gray = plan_shared(preprocesses)
    branches = [MemberBranch(m.eval(), p, g) for m, p, g in zip(models, preprocesses, to_gray)]
    return Ensemble(branches).eval(), shared
