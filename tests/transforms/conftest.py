"""Shared by the transforms tests: real GTSRB images."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def gtsrb_sample(gtsrb_root) -> torch.Tensor:
    """512 real GTSRB validation images spread over all classes, uint8 N x 3 x 32 x 32."""
    from cnnsweep.data.safe_pickle import load_pickle

    features = load_pickle(gtsrb_root / "valid.pickle")["features"]
    return torch.from_numpy(np.ascontiguousarray(features[::len(features) // 512][:512])).permute(0, 3, 1, 2)
