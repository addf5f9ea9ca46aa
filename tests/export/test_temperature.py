"""The calibration temperature in the .onnx metadata: written, read back, bounded, 1.0 for older files."""

from __future__ import annotations

import json

import pytest

from cnnsweep.export import ExportError
from cnnsweep.export.metadata import PREFIX, OnnxModelInfo, build_metadata, parse_metadata
from cnnsweep.transforms import Preprocess


def _props(temperature: float = 1.0) -> dict[str, str]:
    pre = Preprocess(source_size=(8, 8), source_channels=1)
    return build_metadata(OnnxModelInfo(["a", "b"], pre, temperature=temperature))


def test_temperature_round_trips():
    assert parse_metadata(_props(1.7)).temperature == pytest.approx(1.7)
    assert json.loads(_props(1.7)[PREFIX + "temperature"]) == pytest.approx(1.7)


def test_files_without_a_temperature_read_as_unscaled():
    props = _props()
    del props[PREFIX + "temperature"]
    assert parse_metadata(props).temperature == 1.0


@pytest.mark.parametrize("text", ['"2"', "true", "NaN", "Infinity", "0", "-1", "1e6", "null", "[1]"])
def test_out_of_range_or_non_numeric_temperature_is_broken_metadata(text):
    props = _props() | {PREFIX + "temperature": text}
    with pytest.raises(ExportError, match=r"m.onnx: broken cnnsweep metadata \(temperature"):
        parse_metadata(props, where="m.onnx")
