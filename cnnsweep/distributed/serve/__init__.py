"""Ray Serve layer: ONNX Runtime replicas behind the FastAPI app of `cnnsweep.serving`."""

from cnnsweep.distributed.serve.deployment import APP_NAME, InferenceServer, build_app, build_deployment
from cnnsweep.distributed.serve.server import replica_urls, serve_forever, start_server

__all__ = ["APP_NAME", "InferenceServer", "build_app", "build_deployment", "replica_urls", "serve_forever", "start_server"]
