"""Deterministic seeding."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # warn_only: a few ops (e.g. grid_sample backward) have no deterministic CUDA kernel;
        # we would rather train with a warning than crash.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seed_rank_stream(seed: int, rank: int) -> None:
    """Give each DDP rank its own global RNG stream once the model is built.

    Every rank seeds alike first so that all build the same initial weights (DDP then broadcasts rank 0's
    anyway), but dropout draws from the global stream: left alike, rank r would drop the same units for its
    i-th image as every other rank, and a global batch would see 1/world_size of the masks it should (timm
    seeds `seed + rank` for the same reason). Rank 0 keeps the stream of a single-process run, so a
    one-worker run is unchanged."""
    if rank:
        torch.manual_seed(seed * 1_000_003 + rank)
