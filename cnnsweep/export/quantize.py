"""`--int8`: static post-training quantization with ONNX Runtime (QDQ format).

Calibration images are raw training pixels fed to the exported graph, whose own preprocessing then
makes exactly what the model sees. Only the network is quantized: the in-graph preprocessing (integer
histogram equalization, exact luma, resize) stays as exported, so int8 and fp32 files read pixels alike.
Weights are int8 per output channel (per-channel scales keep small filters from being crushed by
large ones); activations uint8, the pairing ORT's x86 kernels (u8 x s8 VNNI/AVX2) run fastest.
Weights use 7 of their 8 bits (`reduce_range`): on x86 CPUs without VNNI (AVX2 only), ORT multiplies
u8 x s8 pairs into int16 with saturation, and full-range weights overflow it. A file exported on a VNNI
machine then loses accuracy wherever it is served on an AVX2 one (measured on the tiny digits model
of tests/export: 0.62 top-1 in fp32, 0.42 in int8 with 8-bit weights on AVX2, 0.61 with 7-bit).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from cnnsweep.errors import ExportError
from cnnsweep.export.metadata import INPUT_NAME, OnnxModelInfo, read_metadata, set_metadata
from cnnsweep.export.onnx_export import check_onnx, save_onnx

CALIBRATION_BATCH = 64  # images per calibration step
SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the exporter's record of the module path behind each node


class ArrayCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over in-memory uint8 N x H x W x C pixels."""

    def __init__(self, images: np.ndarray, batch_size: int = CALIBRATION_BATCH):
        self._batches: Iterator = (images[i:i + batch_size] for i in range(0, len(images), batch_size))

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.uint8)}


def preprocessing_nodes(proto) -> list[str]:
    """Names of the nodes outside the network: everything the exporter did not place in the
    PixelClassifier's `model` scope (its `pixels` scope and the shape bookkeeping around it)."""
    def in_network(node) -> bool:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), "")
        return scopes.startswith("['', 'model'")
    return [n.name for n in proto.graph.node if not in_network(n)]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray,
                  method: str = "minmax") -> Path:
    """Quantize an exported fp32 model; the result keeps the metadata (precision = int8)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"calibration method: expected one of {sorted(methods)}, got {method!r}")
    if len(calibration) == 0:
        raise ExportError("int8: no calibration images")
    info: OnnxModelInfo = read_metadata(str(fp32_path))
    with tempfile.TemporaryDirectory(prefix="cnnsweep-int8-") as tmp:
        pre, raw = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # shape inference for the quantizer; ORT's own optimization pass is skipped because it renames
        # nodes, and the names are how the preprocessing is told apart (the exporter already fused BN)
        quant_pre_process(str(fp32_path), str(pre), skip_optimization=True)
        quantize_static(str(pre), str(raw), ArrayCalibrationReader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=preprocessing_nodes(onnx.load(str(pre))),
                        calibrate_method=methods[method], use_external_data_format=False)
        proto = onnx.load(str(raw))
    info.precision = "int8"
    set_metadata(proto, info)  # the quantizer does not promise to carry metadata_props over
    check_onnx(proto)
    return save_onnx(proto, out_path)
