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


def test_ray_tasks_skip_bad_images_like_the_local_path(ray_session, tiny_gtsrb_sweep, tmp_path):
    from PIL import Image

    from cnnsweep.distributed.predict import predict_on_ray
    from cnnsweep.export.ensemble_export import export_ensemble
    from cnnsweep.predict import PredictError, resolve_inputs

    onnx = export_ensemble(tiny_gtsrb_sweep, tmp_path / "ens.onnx", top=1).onnx
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 30, 30)).save(folder / f"{i}.png")
    (folder / "1b.png").write_bytes(b"not a png")
    inputs = resolve_inputs([str(folder)])
    summary = predict_on_ray(onnx, inputs, tmp_path / "ray.csv", chunk_size=2, skip_bad=True)
    assert summary.num_images == 3 and [s["id"] for s in summary.skipped] == ["1b.png"]
    with pytest.raises(PredictError, match="1b.png"):  # without --skip-bad the task's error reaches the caller
        predict_on_ray(onnx, inputs, tmp_path / "strict.csv", chunk_size=2)
