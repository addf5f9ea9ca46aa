"""The configurable custom CNN family (`model.name: cnn`) that spans the assignments' ablations.

    input [-> stn] -> stages[0] -> ... -> stages[S-1] -> head -> logits
    (with model.tta: hflip, in eval mode: logits of the mean softmax over the input and its mirror)
    stn     = a spatial transformer (cnnsweep/models/stn.py) with model.stn: true
    stage i = convs_per_stage x (3x3 conv [-> BN] -> act), then downsample (pool or stride 2),
              then Dropout2d(stage_dropout, default dropout / 2)
    head    = gap: global average pool -> Dropout(dropout) -> Linear
              flatten: flatten -> Dropout(dropout) -> Linear
              with head_hidden > 0, "-> Linear" is "-> Linear(head_hidden) -> act -> Dropout(dropout) -> Linear"
              (the classic flatten + FC head of the GTSRB literature)

Width doubles each stage (capped at MAX_WIDTH) because each downsampling quarters the positions;
doubling channels keeps the compute per stage roughly constant.

Downsampling stops once the feature map is 1x1: a 2x2 window over a 1x1 map has no output
(PyTorch raises), so on the 8x8 digits three stages go 8 -> 4 -> 2 -> 1 and a fourth stage keeps 1x1.
Because the size schedule is fixed at construction, `image_size` must be the size the model sees.

The model follows timm's conventions (`get_classifier`, `group_matcher`, `feature_info`,
`forward_features`, `forward_head`) so freezing, param groups and the summary treat it like a timm model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch
import torch.nn as nn

from cnnsweep.config import CNNModelConfig
from cnnsweep.models.registry import ModelError, register_model
from cnnsweep.models.stn import SpatialTransformer
from cnnsweep.models.tta import TTA_MODES, hflip_averaged
from cnnsweep.registry import POOLINGS as POOLING_REGISTRY

MAX_WIDTH = 512  # channel cap for the doubling schedule (a width above it is kept, never raised)
MAX_HEAD_PARAMS = 50_000_000  # head larger than this (200 MB in fp32) is refused
# Conv weights of all stages together: 100M (400 MB in fp32) is 4x ResNet-50's whole model. Widths and
# depth come from config files and checkpoints, so the count is checked before any layer is allocated.
MAX_CONV_PARAMS = 100_000_000

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
# Kaiming-style gain per activation: g = 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), so a conv with weight
# std g / sqrt(fan_in) keeps its pre-activation variance at 1 layer after layer. This criterion gives
# ReLU's sqrt(2); torch's calculate_gain has no GELU/SiLU/ELU entry, and ReLU's gain would shrink
# their variance per conv (SiLU: x0.71). Values: Monte Carlo over 2e7 samples.
INIT_GAINS = {"relu": 1.415, "leaky_relu": 1.415, "elu": 1.246, "gelu": 1.534, "silu": 1.677,
              "tanh": 1.593, "sigmoid": 1.847}
CNN_ARGS = CNNModelConfig.family_fields()  # the model.* fields this family reads
HEADS = ("gap", "flatten")

# Downsampling per stage (`model.pooling`): the registry entry makes the layer that halves the side, or
# None when the stage's last conv does it itself (strided) or nothing does (none).
POOLING_REGISTRY.register("max")(lambda: nn.MaxPool2d(2))
POOLING_REGISTRY.register("avg")(lambda: nn.AvgPool2d(2))
POOLING_REGISTRY.register("strided")(lambda: None)  # the last 3x3 conv of the stage has stride 2
POOLING_REGISTRY.register("none")(lambda: None)
POOLINGS = tuple(POOLING_REGISTRY.names())


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ModelError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def stage_widths(num_stages: int, width: int) -> list[int]:
    """Channels per stage: width, 2*width, ... capped at max(MAX_WIDTH, width)."""
    cap = max(MAX_WIDTH, width)
    return [min(width * 2**i, cap) for i in range(num_stages)]


def downsampled_side(side: int, pooling: str) -> int:
    """Spatial side after one stage (side in px). 1x1 maps are never downsampled (see module doc)."""
    if pooling == "none" or side < 2:
        return side
    if pooling == "strided":  # 3x3 conv, stride 2, padding 1: ceil(side / 2)
        return (side + 1) // 2
    return side // 2  # 2x2 max/avg pool, stride 2: floor(side / 2)


def _build_stage(c_in: int, c_out: int, *, convs: int, batch_norm: bool, activation: str,
                 pooling: str, downsample: bool, dropout: float) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for j in range(1, convs + 1):
        stride = 2 if (pooling == "strided" and downsample and j == convs) else 1
        # No conv bias under BN: BN's shift makes it redundant (and it would get weight decay).
        layers[f"conv{j}"] = nn.Conv2d(c_in if j == 1 else c_out, c_out, 3, stride, padding=1,
                                       bias=not batch_norm)
        if batch_norm:
            layers[f"bn{j}"] = nn.BatchNorm2d(c_out)
        layers[f"act{j}"] = make_activation(activation)
    pool = POOLING_REGISTRY.get(pooling)() if downsample else None
    if pool is not None:
        layers["pool"] = pool
    if dropout > 0:
        # Spatial dropout: neighbouring pixels of a feature map are strongly correlated, so zeroing
        # single activations barely regularises a conv net; Dropout2d zeroes whole channels instead.
        # Default: half the head rate because it applies after every stage and the noise compounds.
        layers["drop"] = nn.Dropout2d(dropout)
    return nn.Sequential(layers)


def _classifier(in_features: int, num_classes: int, hidden: int, activation: str,
                dropout: float) -> OrderedDict[str, nn.Module]:
    """The head's linear part: one Linear, or Linear -> act -> Dropout -> Linear with `hidden` units."""
    if not hidden:
        return OrderedDict(fc=nn.Linear(in_features, num_classes))
    return OrderedDict(hidden=nn.Linear(in_features, hidden), hidden_act=make_activation(activation),
                       hidden_drop=nn.Dropout(dropout), fc=nn.Linear(hidden, num_classes))


def _build_head(c_last: int, side: int, num_classes: int, head: str, dropout: float,
                hidden: int = 0, activation: str = "relu") -> nn.Sequential:
    if head == "gap":
        gap_params = (c_last + 1) * hidden + (hidden + 1) * num_classes if hidden else 0
        if gap_params > MAX_HEAD_PARAMS:
            raise ModelError(f"model.head_hidden={hidden:,} needs {gap_params:,} head parameters "
                             f"(limit {MAX_HEAD_PARAMS:,}); use fewer hidden units")
        return nn.Sequential(OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),
                                         drop=nn.Dropout(dropout),
                                         **_classifier(c_last, num_classes, hidden, activation, dropout)))
    in_features = c_last * side * side
    head_params = (in_features + 1) * (hidden or num_classes)  # the layer fed by the flattened map
    if head_params > MAX_HEAD_PARAMS:
        raise ModelError(
            f"model.head=flatten on a {c_last}x{side}x{side} final feature map needs a linear layer "
            f"with {head_params:,} parameters (limit {MAX_HEAD_PARAMS:,}); use model.head=gap, "
            f"a pooling other than 'none', more stages, or a smaller data.image_size")
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(1), drop=nn.Dropout(dropout),
                                     **_classifier(in_features, num_classes, hidden, activation, dropout)))


class CNN(nn.Module):
    """Plain conv stages + a linear head. See the module docstring for the layout."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, *,
                 num_stages: int = 3, width: int = 32, convs_per_stage: int = 2,
                 batch_norm: bool = True, dropout: float = 0.0, activation: str = "relu",
                 pooling: str = "max", head: str = "gap", head_hidden: int = 0,
                 stage_dropout: float | None = None, stn: bool = False, tta: str = "none") -> None:
        super().__init__()
        _check_args(num_stages, width, convs_per_stage, dropout, pooling, head, image_size)
        if tta not in TTA_MODES:
            raise ModelError(f"unknown tta {tta!r}; choose from {', '.join(TTA_MODES)}")
        if head_hidden < 0 or not 0 <= (stage_dropout or 0) < 1:
            raise ModelError("head_hidden must be >= 0 and stage_dropout in [0, 1)")
        stage_drop = dropout / 2 if stage_dropout is None else stage_dropout
        make_activation(activation)  # fail early on a bad name
        _check_size(in_channels, stage_widths(num_stages, width), convs_per_stage)
        stages, self.feature_info = [], []
        c_in, side, reduction = in_channels, image_size, 1
        for i, c_out in enumerate(stage_widths(num_stages, width)):
            new_side = downsampled_side(side, pooling)
            stages.append(_build_stage(c_in, c_out, convs=convs_per_stage, batch_norm=batch_norm,
                                       activation=activation, pooling=pooling,
                                       downsample=new_side != side, dropout=stage_drop))
            reduction *= 2 if new_side != side else 1
            self.feature_info.append({"num_chs": c_out, "reduction": reduction, "module": f"stages.{i}"})
            c_in, side = c_out, new_side
        self.stn = SpatialTransformer(in_channels, image_size) if stn else None
        self.stages = nn.Sequential(*stages)
        self.head = _build_head(c_in, side, num_classes, head, dropout, head_hidden, activation)
        self.num_classes, self.num_features, self.final_side = num_classes, c_in, side
        self.tta = tta  # eval mode only (cnnsweep/models/tta.py); a plain attribute: nothing to save
        self._init_weights(activation)

    def _init_weights(self, activation: str) -> None:
        gain = INIT_GAINS[activation]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Kaiming normal, fan_in mode: keeps the forward variance ~constant through the stack,
                # which matters most in the batch_norm=false ablation (torch's default init divides it by ~6 per ReLU conv).
                nn.init.normal_(m.weight, std=gain / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):  # small logits at the start: loss ~ log(num_classes)
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        if hasattr(self.head, "hidden"):  # a hidden FC layer is followed by an activation: Kaiming, like a conv
            nn.init.normal_(self.head.hidden.weight, std=gain / self.head.hidden.in_features ** 0.5)
        if self.stn is not None:  # its own init (the loop above re-drew its layers): the identity warp
            self.stn.reset_to_identity()

    # timm-compatible interface ------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm-style parameter groups: the spatial transformer if any (stem), one per stage; the head is
        unmatched, so it comes last."""
        blocks = {"blocks": r"^stages\.(\d+)"}
        return blocks if self.stn is None else {"stem": r"^stn\."} | blocks

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.stn is not None:
            x = self.stn(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def _forward_one(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta == "hflip" and not self.training:
            return hflip_averaged(self._forward_one, x)
        return self._forward_one(x)


def _check_args(num_stages: int, width: int, convs: int, dropout: float, pooling: str, head: str,
                image_size: int) -> None:
    if num_stages < 1 or width < 1 or convs < 1:
        raise ModelError("num_stages, width and convs_per_stage must be >= 1")
    if not 0 <= dropout < 1:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}")
    if pooling not in POOLINGS:
        raise ModelError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    if image_size < 1:
        raise ModelError(f"image_size must be >= 1, got {image_size}")


def conv_params(in_channels: int, widths: list[int], convs: int) -> int:
    """Weights of every 3x3 conv of the stages (biases and BN are a rounding error)."""
    total, c_in = 0, in_channels
    for c_out in widths:
        total += 9 * c_out * (c_in + (convs - 1) * c_out)
        c_in = c_out
    return total


def _check_size(in_channels: int, widths: list[int], convs: int) -> None:
    n = conv_params(in_channels, widths, convs)
    if n > MAX_CONV_PARAMS:
        raise ModelError(f"model.width={widths[0]} with {len(widths)} stages x {convs} convs needs {n:,} conv "
                         f"parameters (limit {MAX_CONV_PARAMS:,}); use a smaller width or fewer stages/convs")


@register_model("cnn")
def create_cnn(num_classes: int, in_channels: int = 3, image_size: int = 32, *, pretrained: bool = False,
               weights: Optional[str] = None, **cfg: Any) -> CNN:
    unknown = sorted(set(cfg) - set(CNN_ARGS))
    if unknown:
        raise ModelError(f"cnn: unknown argument(s) {', '.join(unknown)}; known: {', '.join(CNN_ARGS)}")
    if pretrained and not weights:
        raise ModelError("model.pretrained=true: the cnn family has no published weights; set "
                         "model.weights to a local file (e.g. a cnnsweep checkpoint.pt) or use timm/<name>")
    model = CNN(num_classes, in_channels, image_size, **cfg)
    if weights:
        from cnnsweep.models.weights import load_weights

        load_weights(model, weights)
    return model
