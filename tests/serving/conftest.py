"""Serving tests: Ray Serve's proxy reads its middleware callback, and its gRPC servers their host and
message limit, from the environment of the Ray processes, so they are set before the shared Ray
instance starts (conftest files load at collection)."""

import os

from cnnsweep.distributed.serve.grpc_bind import GRPC_HOST_ENV
from cnnsweep.distributed.serve.server import GRPC_ENVELOPE_BYTES, GRPC_MAX_MESSAGE_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV

os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
os.environ.setdefault(GRPC_HOST_ENV, "127.0.0.1")  # what `cnnsweep serve --grpc-port` sets (its --host)
GRPC_TEST_MAX_MESSAGE = 256 * 1024 + GRPC_ENVELOPE_BYTES  # test_grpc_server's max_body_bytes + envelope
os.environ.setdefault(GRPC_MAX_MESSAGE_ENV, str(GRPC_TEST_MAX_MESSAGE))
