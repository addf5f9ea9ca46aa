"""Ray Serve layer: ONNX Runtime replicas behind the FastAPI app of `cnnsweep.serving`.

Names are imported on first use (PEP 562): each Serve proxy process imports `proxy_setup` from this
package at start-up, and must not pay for torch, ONNX Runtime and the app it never runs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"APP_NAME": "deployment", "InferenceServer": "deployment", "build_app": "deployment",
            "build_deployment": "deployment", "serve_forever": "server",
            "start_server": "server"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
