"""Serving tests: Ray Serve's proxy reads its middleware callback, and its gRPC servers their host and
message limit, from the environment of the Ray processes, so they are set before the shared Ray
instance starts (conftest files load at collection)."""

import asyncio
import os

import pytest

from cnnsweep.distributed.serve.ray_internals import GRPC_HOST_ENV
from cnnsweep.distributed.serve.server import GRPC_ENVELOPE_BYTES, GRPC_MAX_MESSAGE_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV
from cnnsweep.serving.model import load_served_model
from cnnsweep.serving.settings import ModelSpec, build_settings

os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
os.environ.setdefault(GRPC_HOST_ENV, "127.0.0.1")  # what `cnnsweep serve --grpc-port` sets (its --host)
GRPC_TEST_MAX_MESSAGE = 256 * 1024 + GRPC_ENVELOPE_BYTES  # test_grpc_server's max_body_bytes + envelope
os.environ.setdefault(GRPC_MAX_MESSAGE_ENV, str(GRPC_TEST_MAX_MESSAGE))


class LocalHub:
    """What the HTTP and gRPC apps need of a hub (settings, models, infer), in this process: the apps'
    own logic without Serve's replicas or batching."""

    def __init__(self, model):
        self.settings = build_settings({"models": [str(model.path)], "max_batch_size": 4})
        self.models = {model.name: model}

    async def infer(self, name, pixels):
        return self.models[name].run(pixels)


@pytest.fixture(scope="module")
def local_hub(tiny_onnx):
    return LocalHub(load_served_model(ModelSpec(path=str(tiny_onnx)), 1))


class CountingHub(LocalHub):
    """A LocalHub whose inference takes a while and records how many requests are inside it at once."""

    def __init__(self, model, max_heavy: int):
        super().__init__(model)
        self.settings = self.settings.model_copy(update={"max_heavy_requests": max_heavy, "max_batch_size": 8})
        self.now = self.most = 0

    async def infer(self, name, pixels):
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.2)
        self.now -= 1
        return self.models[name].run(pixels)


@pytest.fixture
def counting_hub(local_hub):
    """counting_hub(max_heavy) -> a CountingHub over the tiny model."""
    return lambda max_heavy: CountingHub(local_hub.models["tiny"], max_heavy)
