"""Ray Serve layer: ONNX Runtime replicas behind a FastAPI app (Open Inference Protocol v2 + /predict).

The pieces without Ray (settings, body, images, model, protocol, responses, http_app) are plain
Python; `deployment` and `server` are where Ray Serve comes in.
"""

from cnnsweep.serving.deployment import APP_NAME, InferenceServer, build_app, build_deployment
from cnnsweep.serving.server import serve_forever, start_server
from cnnsweep.serving.settings import ModelSpec, ServeConfigError, ServeSettings, build_settings

__all__ = ["APP_NAME", "InferenceServer", "ModelSpec", "ServeConfigError", "ServeSettings", "build_app",
           "build_deployment", "build_settings", "serve_forever", "start_server"]
