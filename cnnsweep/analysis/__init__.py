"""Explaining models: per-class errors, data analysis, visualizations, the HTML report.

Plain PyTorch / ONNX Runtime (never ray): what a model gets wrong, what it sees, where it looks, what it costs.

    explain_model(model, preprocess, images_uint8, labels, class_names, out_dir)  # all of the below
    save_feature_map_grids(...)   # feature maps of every conv stage          (feature_maps.py)
    save_deconv_figure(...)       # Zeiler & Fergus deconvolution             (deconv.py)
    generate_class_images(...)    # activation maximization, one per class    (class_images.py)
    save_gradcam_gallery(...)     # Grad-CAM on misclassified images          (gradcam.py)
    build_model_card(...)         # params, FLOPs, memory                     (model_card.py)

Imports are lazy: `import cnnsweep.analysis` loads neither matplotlib nor captum.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "explain_model": "explain", "pick_images": "explain",
    "save_feature_map_grids": "feature_maps", "stage_activations": "feature_maps",
    "save_deconv_figure": "deconv", "deconv_projection": "deconv",
    "ClassImageSettings": "class_images", "generate_class_images": "class_images",
    "save_class_image_grid": "class_images",
    "gradcam_maps": "gradcam", "save_gradcam_gallery": "gradcam",
    "build_model_card": "model_card",
    "analyze_target": "run", "load_target": "target",
    "AnalysisMetrics": "metrics_file", "load_metrics": "metrics_file",
    "stage_layers": "layers", "gradcam_layer": "layers",
}
__all__ = sorted([*_EXPORTS, "AnalysisError"])


def __getattr__(name: str) -> Any:
    if name == "AnalysisError":  # the user-facing error types all live in cnnsweep.errors
        from cnnsweep.errors import AnalysisError
        return AnalysisError
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnsweep.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cnnsweep.analysis.{_EXPORTS[name]}"), name)
