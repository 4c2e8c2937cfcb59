"""Serve's own deployment options pass through the serving config (``deployment_config``)."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cot_transfer.serving.common.serve_options import cpu_demand, gpu_per_replica
from cot_transfer.serving.common.serving_config import IngressConfig, ModelDeploymentConfig, ServingConfig

REPO = Path(__file__).resolve().parents[2]


def model(**fields: Any) -> ModelDeploymentConfig:
    return ModelDeploymentConfig.model_validate({"engine": {"model": "/models/weak"}, **fields})


def test_the_config_keys_alone_give_the_options_they_always_gave() -> None:
    options = model(resources={"num_cpus": 2, "num_gpus": 1}, max_ongoing_requests=32).serve_options()
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1}
    assert options["max_ongoing_requests"] == 32 and options["max_queued_requests"] == 64
    assert options["autoscaling_config"]["max_replicas"] == 1
    assert options["health_check_timeout_s"] == 60 and options["graceful_shutdown_timeout_s"] == 30


def test_serve_options_pass_through_and_override_the_defaults() -> None:
    options = model(
        deployment_config={
            "health_check_period_s": 5,
            "health_check_timeout_s": 600,
            "graceful_shutdown_timeout_s": 120,
            "ray_actor_options": {"num_cpus": 4, "num_gpus": 1, "runtime_env": {"env_vars": {"A": "1"}}},
            "max_replicas_per_node": 1,
        }
    ).serve_options()
    assert options["health_check_period_s"] == 5 and options["health_check_timeout_s"] == 600
    assert options["graceful_shutdown_timeout_s"] == 120
    assert options["ray_actor_options"]["runtime_env"] == {"env_vars": {"A": "1"}}
    assert options["max_replicas_per_node"] == 1


def test_a_fixed_replica_count_replaces_the_autoscaler() -> None:
    options = model(deployment_config={"num_replicas": 3}).serve_options()
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    ingress = IngressConfig(deployment_config={"autoscaling_config": {"min_replicas": 1, "max_replicas": 4}})
    assert "num_replicas" not in ingress.serve_options()
    assert ingress.serve_options()["autoscaling_config"]["max_replicas"] == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deployment_config": {"max_ongoing_request": 8}}, "not options of serve.deployment"),
        ({"deployment_config": {"name": "Other"}}, "set by the application"),
        ({"deployment_config": {"max_ongoing_requests": 0}}, "max_ongoing_requests"),
        ({"deployment_config": {"health_check_period_s": -1}}, "health_check_period_s"),
        ({"max_ongoing_requests": 8, "deployment_config": {"max_ongoing_requests": 16}}, "keep one"),
        ({"autoscaling": {"max_replicas": 2}, "deployment_config": {"num_replicas": 2}}, "keep one"),
    ],
)
def test_unknown_reserved_invalid_or_contradicting_options_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        model(**fields)


def test_the_ingress_shutdown_timeout_is_its_drain_timeout() -> None:
    assert IngressConfig(drain_timeout_s=90).serve_options()["graceful_shutdown_timeout_s"] == 90
    with pytest.raises(ValidationError, match="drain_timeout_s"):
        IngressConfig(deployment_config={"graceful_shutdown_timeout_s": 5})


def test_every_shipped_config_loads_and_yields_serve_options() -> None:
    for path in [*sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))]:
        config = ServingConfig.from_yaml(path)
        for deployment in (config.strong, config.weak):
            assert deployment.serve_options()["max_ongoing_requests"] >= 1
        assert config.ingress.serve_options()["num_replicas"] >= 1


def test_cpu_demand_counts_the_most_replicas_of_the_passed_options() -> None:
    weak = model(
        autoscaling={"max_replicas": 3},
        deployment_config={"ray_actor_options": {"num_cpus": 2, "num_gpus": 1}},
    )
    assert cpu_demand(weak.serve_options()) == 6.0
    assert gpu_per_replica(weak.serve_options()) == 1.0
    assert cpu_demand(model(deployment_config={"num_replicas": 2}).serve_options()) == 2.0
    assert cpu_demand(IngressConfig(num_replicas=2, num_cpus=0.5).serve_options()) == 1.0
