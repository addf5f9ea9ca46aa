"""Loading a served model: a file that names external data, or whose metadata does not describe its
graph, is refused with one line before any request is answered."""

from __future__ import annotations

import pytest

from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ModelSpec, ServeConfigError


@pytest.mark.parametrize("words", ["external data", "3 classes"])
def test_an_untrustworthy_model_file_is_not_served(plant_onnx, tmp_path, words):
    with pytest.raises(ServeConfigError, match=words) as err:
        load_served_model(ModelSpec(path=str(plant_onnx(words, tmp_path))), num_threads=1)
    assert "\n" not in str(err.value)
