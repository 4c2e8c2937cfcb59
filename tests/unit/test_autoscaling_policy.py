"""The engine-queue autoscaling policy on synthetic engine reports."""

from types import SimpleNamespace

import pytest

from cot_transfer.serving.common.serving_config import AutoscalingConfig
from cot_transfer.serving.wiring.autoscaling import ENGINE_RUNNING, ENGINE_WAITING, EngineQueuePolicy


def context(current: int, running: list[float], waiting: list[float]) -> SimpleNamespace:
    replicas = [f"r{index}" for index in range(len(running))]
    return SimpleNamespace(
        current_num_replicas=current,
        aggregated_metrics={
            ENGINE_RUNNING: dict(zip(replicas, running, strict=True)),
            ENGINE_WAITING: dict(zip(replicas, waiting, strict=True)),
        },
    )


@pytest.mark.parametrize(
    ("current", "running", "waiting", "expected"),
    [
        (1, [32], [0], 1),  # busy but keeping up
        (1, [32], [1], 1),  # one waiting sequence per replica is tolerated
        (1, [32], [32], 2),  # demand twice what runs
        (2, [32, 32], [96, 96], 8),  # proportional, not one step at a time
        (1, [4], [40], 11),  # tiny batches served: still proportional to served sequences
        (3, [10, 0, 0], [0, 0, 0], 1),  # everything fits on one replica
        (3, [40, 40, 0], [0, 0, 0], 3),  # 80 running needs 3 at 32 each
        (2, [0, 0], [0, 0], 1),  # idle
    ],
)
def test_desired_replicas(current: int, running: list[float], waiting: list[float], expected: int) -> None:
    desired, state = EngineQueuePolicy(waiting_per_replica=1.0, running_per_replica=32.0)(
        context(current, running, waiting)
    )
    assert desired == expected
    assert state == {}


def test_missing_metrics_keep_the_current_size_or_shrink_when_idle() -> None:
    policy = EngineQueuePolicy()
    assert policy(SimpleNamespace(current_num_replicas=2, aggregated_metrics=None))[0] == 1


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        EngineQueuePolicy(running_per_replica=0)


def test_config_selects_the_policy_for_serve() -> None:
    from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig

    default = AutoscalingConfig(max_replicas=4).serve_config()
    assert "policy" not in default
    engine_queue = AutoscalingConfig(max_replicas=4, policy="engine_queue").serve_config()
    parsed = ServeAutoscalingConfig(**engine_queue)
    assert parsed.policy.policy_function == "cot_transfer.serving.wiring.autoscaling:EngineQueuePolicy"
    assert parsed.policy.policy_kwargs == {"waiting_per_replica": 1.0, "running_per_replica": 32.0}
