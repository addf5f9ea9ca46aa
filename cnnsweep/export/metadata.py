"""What travels inside the .onnx file: `metadata_props` (string -> string, JSON values).

A server or client needs nothing but the file: class names, input shape, the preprocessing
(Preprocess.to_dict(), so `Preprocess.from_dict` rebuilds the training-time code path), the config,
the validation metrics and the calibration temperature (softmax(logits / T); 1.0 = none fitted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from cnnsweep.checkpoint import class_name_list
from cnnsweep.engine.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from cnnsweep.errors import ExportError
from cnnsweep.transforms import Preprocess
from cnnsweep.transforms.pixels import split_for_graph

# /2: the graph reads raw uint8 N x H x W x C pixels and does the preprocessing itself (/1 read the
# normalized float32 model input); a /1 file is refused with a "re-export" message.
FORMAT = "cnnsweep-onnx/2"
PREFIX = "cnnsweep."
INPUT_NAME = "image"  # uint8 N x H x W x C raw pixels; H x W = `image_size`, C = `input_channels`
OUTPUT_NAME = "logits"  # float32 N x num_classes, before softmax (calibrated: softmax(logits / temperature))
INPUT_DOC = ("uint8 N x H x W x C raw pixels (RGB or gray) at image_size (resize other sizes first: antialiased "
             "bilinear); the graph converts, equalizes and normalizes them as in training")
CLAHE_DOC = ("CLAHE pre-step: the graph reads pixels already converted, resized and CLAHE-equalized by "
             "cnnsweep.transforms.Preprocess.prepare (CLAHE has no ONNX form)")


@dataclass
class OnnxModelInfo:
    """The decoded metadata of an exported model."""

    class_names: list[str]
    preprocess: Preprocess
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"  # fp32 | int8
    source: str = ""  # the checkpoint it was exported from
    # Ensembles only: {"combine", "output", "members": [{rank, trial_id, checkpoint, metrics, config,
    # preprocess}]}; then `preprocess` is the shared path and `metrics` the ensemble's own measurement.
    ensemble: Optional[dict[str, Any]] = None
    # Temperature scaling fitted on the validation split at export: calibrated probabilities are
    # softmax(logits / temperature). The graph's output stays the raw logits.
    temperature: float = 1.0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image as the network inside the graph sees it, after preprocessing."""
        return self.preprocess.input_shape

    @property
    def input_channels(self) -> int:
        """C of the graph's uint8 N x H x W x C input: the training images' channels (the model's own
        channels for a CLAHE model, whose pre-step converts them)."""
        return split_for_graph(self.preprocess)[1].source_channels

    @property
    def pre_step(self) -> Optional[str]:
        """What must run before the graph (None for most models; CLAHE_DOC for CLAHE models)."""
        return None if split_for_graph(self.preprocess)[0] is None else CLAHE_DOC

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_metadata(info: OnnxModelInfo) -> dict[str, str]:
    """OnnxModelInfo -> metadata_props entries (all values JSON text)."""
    c, h, w = info.input_shape
    values = {"format": FORMAT, "class_names": info.class_names, "num_classes": info.num_classes,
              "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "input_doc": INPUT_DOC,
              "pre_step": info.pre_step, "input_channels": info.input_channels,
              "model_input_shape": [c, h, w], "image_size": [h, w],
              "preprocess": info.preprocess.to_dict(), "config": info.config, "metrics": info.metrics,
              "precision": info.precision, "source": info.source, "temperature": info.temperature}
    if info.ensemble is not None:
        values["ensemble"] = info.ensemble
    return {PREFIX + k: json.dumps(v, sort_keys=True) for k, v in values.items()}


def set_metadata(model_proto: Any, info: OnnxModelInfo) -> None:
    """Replace the cnnsweep.* metadata_props of an onnx.ModelProto, in place."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if not p.key.startswith(PREFIX)]
    del model_proto.metadata_props[:]
    for key, value in keep + sorted(build_metadata(info).items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "cnnsweep"
    model_proto.doc_string = (f"cnnsweep classifier ({info.num_classes} classes); input: {INPUT_DOC}"
                              + (f". {info.pre_step}" if info.pre_step else ""))


def parse_metadata(props: Mapping[str, str], where: str = "model") -> OnnxModelInfo:
    """metadata_props (from onnx or from an ORT session's custom_metadata_map) -> OnnxModelInfo."""
    try:
        values = {k[len(PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)}
    except json.JSONDecodeError as err:
        raise ExportError(f"{where}: cnnsweep metadata is not valid JSON ({err})") from None
    if values.get("format") == "cnnsweep-onnx/1":
        raise ExportError(f"{where}: exported by an older cnnsweep (its graph reads normalized float32 input); "
                          "re-export it from its checkpoint with `cnnsweep export`")
    if values.get("format") != FORMAT:
        raise ExportError(f"{where}: not a cnnsweep ONNX export (metadata format "
                          f"{values.get('format')!r}, expected {FORMAT!r}); export it with `cnnsweep export`")
    try:
        preprocess = Preprocess.from_dict(values["preprocess"])
        names = class_name_list(values["class_names"])
    except (KeyError, TypeError, ValueError) as err:
        raise ExportError(f"{where}: broken cnnsweep metadata ({err})") from None
    _check_redundant_fields(values, names, preprocess, where)
    return OnnxModelInfo(names, preprocess, dict(values.get("config") or {}), dict(values.get("metrics") or {}),
                         str(values.get("precision", "fp32")), str(values.get("source", "")),
                         _ensemble_field(values.get("ensemble"), where),
                         _temperature_field(values.get("temperature", 1.0), where))


def _check_redundant_fields(values: dict[str, Any], names: list[str], preprocess: Preprocess, where: str) -> None:
    """num_classes, model_input_shape, input_channels and image_size repeat what class_names and
    preprocess say, for readers without cnnsweep; a file where they disagree was not written by
    build_metadata."""
    c, h, w = preprocess.input_shape
    graph_c = split_for_graph(preprocess)[1].source_channels
    expected = {"num_classes": (len(names), f"its {len(names)} class names"),
                "model_input_shape": ([c, h, w], f"the preprocessing's model input shape {[c, h, w]}"),
                "input_channels": (graph_c, f"the preprocessing's {graph_c} input channel(s)"),
                "image_size": ([h, w], f"the preprocessing's image size {[h, w]}")}
    for key, (want, what) in expected.items():
        if values.get(key) != want:
            raise ExportError(f"{where}: broken cnnsweep metadata ({key} {values.get(key)!r} does not match {what})")


def _ensemble_field(value: Any, where: str) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("members"), list):
        raise ExportError(f"{where}: broken cnnsweep metadata (ensemble needs a members list)")
    return value


def _temperature_field(value: Any, where: str) -> float:
    """A number in [MIN_TEMPERATURE, MAX_TEMPERATURE] (what the export's fit is clamped to); files
    exported before calibration have none: 1.0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:  # NaN fails the comparison too
        raise ExportError(f"{where}: broken cnnsweep metadata (temperature {value!r} is not a number in "
                          f"{MIN_TEMPERATURE}..{MAX_TEMPERATURE})")
    return float(value)


def read_metadata(path: str) -> OnnxModelInfo:
    """The metadata of an .onnx file (loads the graph but not external data)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    return parse_metadata({p.key: p.value for p in proto.metadata_props}, where=str(path))
