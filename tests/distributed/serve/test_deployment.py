"""The Serve deployment built from ServeSettings (no running Ray needed): fixed replica counts, and
`num_replicas: auto` with an `autoscaling_config`, checked the way Ray reads it."""

from __future__ import annotations

import pytest

from cnnsweep.distributed.serve.deployment import build_deployment
from cnnsweep.distributed.serve.server import grpc_options, http_options
from cnnsweep.serving import ServeConfigError, build_settings

MODELS = {"models": ["model.onnx"]}  # not opened: building a deployment reads no file


def test_a_fixed_replica_count_has_no_autoscaling():
    dep = build_deployment(build_settings({**MODELS, "num_replicas": 3}))
    assert dep.num_replicas == 3 and dep._deployment_config.autoscaling_config is None


def test_auto_with_an_autoscaling_config_reaches_the_deployment():
    settings = build_settings({**MODELS, "num_replicas": "auto", "max_batch_size": 16,
                               "autoscaling_config": {"min_replicas": 1, "max_replicas": 3,
                                                      "target_ongoing_requests": 16}})
    config = build_deployment(settings)._deployment_config
    assert config.autoscaling_config.min_replicas == 1 and config.autoscaling_config.max_replicas == 3
    assert config.autoscaling_config.target_ongoing_requests == 16
    assert config.max_ongoing_requests == settings.max_ongoing_requests


def test_auto_alone_uses_rays_autoscaling_defaults():
    config = build_deployment(build_settings({**MODELS, "num_replicas": "auto"}))._deployment_config
    assert config.autoscaling_config is not None and config.autoscaling_config.min_replicas == 1


def test_an_autoscaling_config_needs_auto():
    with pytest.raises(ServeConfigError, match="needs num_replicas 'auto'"):
        build_settings({**MODELS, "num_replicas": 2, "autoscaling_config": {"max_replicas": 4}})


@pytest.mark.parametrize("config, message", [({"max_replica": 4}, r"unknown \['max_replica'\]"),
                                             ({"min_replicas": 5, "max_replicas": 1}, "max_replicas"),
                                             ({"target_ongoing_requests": "many"}, "target_ongoing_requests")])
def test_a_bad_autoscaling_config_is_a_clear_error(config, message):
    with pytest.raises(ServeConfigError, match=message):
        build_deployment(build_settings({**MODELS, "num_replicas": "auto", "autoscaling_config": config}))


def test_the_request_deadline_reaches_both_proxies():
    settings = build_settings({**MODELS, "request_timeout_s": 7.5})
    assert http_options(settings, "127.0.0.1", 8000) == {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 7.5}
    assert grpc_options(settings, 9000)["request_timeout_s"] == 7.5
    assert grpc_options(settings, None) is None
