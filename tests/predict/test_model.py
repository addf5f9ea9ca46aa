"""`cnnsweep predict MODEL.onnx`: a file that names external data, or whose metadata does not describe its
graph, is refused with one line before any image is predicted."""

from __future__ import annotations

import pytest

from cnnsweep.predict import PredictError, load_predictor


@pytest.mark.parametrize("words", ["external data", "3 classes"])
def test_an_untrustworthy_model_file_predicts_nothing(plant_onnx, tmp_path, words):
    with pytest.raises(PredictError, match=words) as err:
        load_predictor(plant_onnx(words, tmp_path), num_threads=1)
    assert "\n" not in str(err.value)
