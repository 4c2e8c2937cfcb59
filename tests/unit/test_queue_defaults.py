"""A config that sets no queue bounds still sheds past a bounded queue: the code's defaults are bounded."""

from __future__ import annotations

import yaml

from cot_transfer.serving.common.serving_config import (
    DEFAULT_INGRESS_MAX_QUEUED_REQUESTS,
    DEFAULT_MODEL_MAX_QUEUED_REQUESTS,
    IngressConfig,
    ModelDeploymentConfig,
    ServingConfig,
)
from tests.conftest import REPO


def test_a_config_without_queue_bounds_gets_bounded_queues_for_every_deployment() -> None:
    path = REPO / "configs" / "local-cpu.yaml"
    data = yaml.safe_load(path.read_text())
    for section in ("strong", "weak", "ingress"):
        data[section].pop("max_queued_requests", None)
    config = ServingConfig.model_validate(data).with_models_relative_to(path.parent)
    queues = {
        "strong": config.strong.serve_options()["max_queued_requests"],
        "weak": config.weak.serve_options()["max_queued_requests"],
        "ingress": config.ingress.serve_options()["max_queued_requests"],
    }
    assert queues == {
        "strong": DEFAULT_MODEL_MAX_QUEUED_REQUESTS,
        "weak": DEFAULT_MODEL_MAX_QUEUED_REQUESTS,
        "ingress": DEFAULT_INGRESS_MAX_QUEUED_REQUESTS,
    }


def test_the_default_queues_match_the_shipped_configs() -> None:
    """One replica's worth of calls per model caller, and 128 per gRPC proxy, as every shipped CPU config sets."""
    model = ModelDeploymentConfig.model_fields
    assert model["max_queued_requests"].default == model["max_ongoing_requests"].default == 64
    assert IngressConfig().max_queued_requests == 128
    shipped = ServingConfig.from_yaml(REPO / "configs" / "local-cpu.yaml")
    assert (shipped.weak.max_queued_requests, shipped.ingress.max_queued_requests) == (64, 128)
