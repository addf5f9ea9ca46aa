"""Serving tests: Ray Serve's proxy reads its middleware callback from the environment of the Ray
processes, so it is set before the shared Ray instance starts (conftest files load at collection)."""

import os

from cnnsweep.distributed.serve.server import PROXY_CALLBACK, PROXY_CALLBACK_ENV

os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
