"""The Ray path of `cnnsweep analyze` (tasks over chunks, model put once) gives the local path's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_predict_equals_local(ray_session, tmp_path):
    from cnnsweep.analysis.predictions import predict_local
    from cnnsweep.analysis.target import load_target
    from cnnsweep.config import validate_config
    from cnnsweep.data import load_dataset
    from cnnsweep.distributed.analysis_tasks import ray_predict
    from cnnsweep.engine import LocalHooks, fit

    cfg = validate_config({"data": {"name": "digits"}, "model": {"num_stages": 2, "width": 8, "convs_per_stage": 1},
                           "train": {"epochs": 1, "amp": "off"}})
    dataset = load_dataset(cfg.data)
    hooks = LocalHooks(output=tmp_path)
    fit(cfg, dataset, hooks)
    predictor = load_target(hooks.last_checkpoint).candidates[0].predictor
    images = torch.cat([dataset.train.images, dataset.valid.images])  # 1,797 images: several chunks
    local = predict_local(predictor, images)
    remote = ray_predict(workers=2)(predictor, images)
    assert remote.shape == local.shape == (len(images), 10)
    np.testing.assert_allclose(remote, local, atol=1e-5)
