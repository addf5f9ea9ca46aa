"""`cnnsweep predict --address`: Ray tasks over chunks write the same CSV as the local path."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_tasks_match_the_local_csv(ray_session, tiny_gtsrb_sweep, gtsrb_root, tmp_path):
    from cnnsweep.distributed.predict import predict_on_ray
    from cnnsweep.export.ensemble_export import export_ensemble
    from cnnsweep.predict import load_predictor, predict, resolve_inputs

    onnx = export_ensemble(tiny_gtsrb_sweep, tmp_path / "ens.onnx", top=2).onnx
    inputs = resolve_inputs([f"gtsrb_pickle:{gtsrb_root}:valid"])
    local = predict(load_predictor(onnx), inputs, tmp_path / "local.csv", top_k=2)
    remote = predict_on_ray(onnx, inputs, tmp_path / "ray.csv", top_k=2, chunk_size=1000, max_in_flight=2)
    assert remote.num_images == local.num_images == 4320 and remote.accuracy == local.accuracy
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()
