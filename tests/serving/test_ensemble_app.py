"""An ensemble served like a single model, through the real FastAPI app in-process (no Ray)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnsweep.checkpoint import load_model_from_checkpoint
from cnnsweep.data import load_dataset
from cnnsweep.export.ensemble_export import export_ensemble
from cnnsweep.serving import build_settings
from cnnsweep.serving.http_app import build_http_app
from cnnsweep.serving.model import load_served_models

pytestmark = pytest.mark.slow


class InProcessHub:
    """What the Ray Serve deployment gives the app (settings, models, infer), without Ray."""

    def __init__(self, settings):
        self.settings = settings
        self.models = load_served_models(settings)

    async def infer(self, name: str, pixels: np.ndarray) -> np.ndarray:
        return self.models[name].run(pixels)


@pytest.fixture(scope="module")
def served(tiny_gtsrb_sweep, tmp_path_factory):
    report = export_ensemble(tiny_gtsrb_sweep, tmp_path_factory.mktemp("ens") / "ens.onnx", top=3)
    hub = InProcessHub(build_settings({"models": [{"path": report.onnx, "name": "ens"}], "num_cpus": 1}))
    return TestClient(build_http_app(hub)), report


def _png(hwc: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="PNG")
    return buf.getvalue()


def test_metadata_route_lists_members_and_their_metrics(served):
    client, report = served
    meta = client.get("/v2/models/ens").json()
    ens = meta["parameters"]["ensemble"]
    assert ens["num_members"] == 3 and ens["combine"] == "mean_softmax"
    assert [m["trial_id"] for m in ens["members"]] == [m["trial_id"] for m in report.ensemble["members"]]
    assert all("val/acc" in m["metrics"] and "model.width" in m["config"] for m in ens["members"])
    assert meta["parameters"]["metrics"]["val/acc"] == report.ensemble["metrics"]["val/acc"]
    assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}  # colour: one member is gray
    assert client.get("/v2/models").json()["models"][0]["name"] == "ens"


def test_uploaded_png_gets_the_pytorch_ensemble_probabilities(served, tiny_gtsrb_sweep):
    client, report = served
    members = [load_model_from_checkpoint(m["checkpoint"]) for m in report.ensemble["members"]]
    valid = load_dataset(members[0].config.data).valid
    for i in (0, 150, 299):
        img = valid.images[i:i + 1]
        with torch.inference_mode():
            want = np.mean([torch.softmax(lm.model(lm.preprocess(img)), 1).numpy()[0] for lm in members], axis=0)
        res = client.post("/v2/models/ens/predict?top_k=3", files={"file": ("x.png", _png(img[0].permute(1, 2, 0).numpy()))})
        assert res.status_code == 200, res.text
        preds = res.json()["predictions"]
        assert preds[0]["index"] == int(want.argmax())
        assert [p["score"] for p in preds] == pytest.approx(sorted(want, reverse=True)[:3], abs=1e-5)
