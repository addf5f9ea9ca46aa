"""The HTTP inference app, without Ray: settings, request bodies, image decoding, ONNX Runtime models,
the Open Inference Protocol v2 and the FastAPI app. Importing this package never imports ray; Ray Serve
wraps it in `cnnsweep.distributed.serve` (the deployment and the server process).
"""

from cnnsweep.serving.settings import ModelSpec, ServeConfigError, ServeSettings, build_settings

__all__ = ["ModelSpec", "ServeConfigError", "ServeSettings", "build_settings"]
