"""Can a model name with a `pretrained` setting be built here and now? Asked before a sweep starts.

Cheap on purpose: nothing is built or downloaded. A family may register a `check` (see
`register_model`); timm's looks the name up in timm and its weights in the cache or, online, on the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnsweep.models.registry import ModelError, model_entry


def model_problem(name: str, pretrained: bool, weights: Optional[str] = None) -> Optional[str]:
    """None when `name` (with `pretrained`) can run, else one line: what is wrong and the fix."""
    try:
        entry, extra = model_entry(name)
    except ModelError as err:
        return str(err)
    if weights and not Path(weights).expanduser().is_file():
        return f"model.weights: file not found: {weights}"
    check = entry.meta.get("check")
    if check is not None:
        return check(pretrained=pretrained, weights=weights, **extra)
    if pretrained and not weights:
        return (f"{name} has no published weights: set model.weights to a local file, "
                "or model.pretrained=false")
    return None
