"""Grad-CAM (Selvaraju et al. 2017) overlays, via captum's LayerGradCam, for misclassified images.

The target layer is the last convolutional stage with more than one position (layers.gradcam_layer):
Grad-CAM weights that stage's channels by the spatially averaged gradient of the class score, keeps
the positive part, and the map is upsampled (bilinear) to the image and scaled to 0..1 per image.
Each gallery cell shows the image (true, predicted, confidence), the map for the predicted class
(where the evidence for the wrong answer was) and the map for the true class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnsweep.analysis.display import as_hwc, model_inputs
from cnnsweep.analysis.layers import gradcam_layer
from cnnsweep.analysis.plotting import new_grid, save_figure, short, show
from cnnsweep.models.tta import single_view

CAM_ALPHA = 0.5  # overlay opacity


def gradcam_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                 layer: tuple[str, nn.Module] | None = None) -> torch.Tensor:
    """N x H x W maps in 0..1 (input resolution) for normalized inputs `x` and one class per image."""
    from captum.attr import LayerAttribution, LayerGradCam

    _, module = layer or gradcam_layer(model, x)
    was_training = model.training
    model.eval()
    try:
        with single_view(model):  # the map of the image as given (test-time views would double the batch)
            cam = LayerGradCam(model, module).attribute(x, target=targets.to(x.device).tolist(),
                                                        relu_attributions=True)
    finally:
        model.train(was_training)
    cam = LayerAttribution.interpolate(cam.detach().float(), tuple(x.shape[-2:]), "bilinear")[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)  # an all-zero map stays zero
    return (cam.clamp_min(0) / peak).cpu()


def _cell(axes, image, cam_pred, cam_true, title: str) -> None:
    shown = as_hwc(image)
    show(axes[0], shown, title)
    for ax, cam, what in ((axes[1], cam_pred, "Grad-CAM: pred"), (axes[2], cam_true, "Grad-CAM: true")):
        show(ax, shown, what)
        ax.imshow(cam.numpy(), cmap="jet", alpha=CAM_ALPHA, vmin=0, vmax=1, interpolation="bilinear")


def save_gradcam_gallery(model: nn.Module, preprocess, images_uint8: torch.Tensor, true, pred, conf,
                         class_names: list[str], path: str | Path, *, columns: int = 2) -> Path:
    """PNG gallery: per image [image | CAM(pred) | CAM(true)], titled true / pred / confidence.
    `true`, `pred`: class indices per image; `conf`: the predicted class's probability (0..1)."""
    true, pred, conf = (torch.as_tensor(v) for v in (true, pred, conf))
    if not len(images_uint8) == len(true) == len(pred) == len(conf) > 0:
        raise ValueError("gradcam gallery: images, true, pred and conf need the same non-zero length")
    device = next(model.parameters()).device
    shown, x = model_inputs(preprocess, images_uint8, device)
    layer = gradcam_layer(model, x)
    cam_pred, cam_true = gradcam_maps(model, x, pred, layer), gradcam_maps(model, x, true, layer)
    cols = min(columns, len(shown))
    fig, axes = new_grid(-(-len(shown) // cols), 3 * cols, extra_height=0.6)
    for k in range(len(shown)):
        r, c = divmod(k, cols)
        title = (f"true: {short(class_names[int(true[k])])}\npred: {short(class_names[int(pred[k])])}"
                 f"\nconf {float(conf[k]):.0%}")
        _cell(axes[r, 3 * c:3 * c + 3], shown[k].cpu(), cam_pred[k], cam_true[k], title)
    return save_figure(fig, path, f"Misclassified images with Grad-CAM on {layer[0]}")
