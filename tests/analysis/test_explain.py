"""explain_model end to end on the trained digits CNN: JSON-able result, every PNG written."""

from __future__ import annotations

import json
from pathlib import Path

from cnnsweep.analysis import explain_model
from cnnsweep.analysis.class_images import ClassImageSettings


def test_explain_model_writes_every_section(digits_model, tmp_path):
    loaded, dataset = digits_model
    result = explain_model(loaded.model, loaded.preprocess, dataset.train.images, dataset.train.labels,
                           loaded.class_names, tmp_path, num_images=3, seed=1,
                           class_image_settings=ClassImageSettings(steps=30))
    json.dumps(result)
    sections = [f["section"] for f in result["figures"]]
    assert sections == ["feature_maps", "feature_maps", "deconv", "class_images"]  # 2 conv stages
    for f in result["figures"]:
        assert Path(f["path"]).is_file() and f["title"] and f["caption"]
    assert len(result["images"]) == 3 and len(result["class_images"]["probabilities"]) == 10
    assert result["model_card"]["params"]["total"] == sum(p.numel() for p in loaded.model.parameters())
