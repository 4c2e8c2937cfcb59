"""``NO_METRICS``: every ``ServiceMetrics`` method records nothing, and it has no others."""

from __future__ import annotations

import inspect

import pytest

from cot_transfer.serving.common.metrics import NO_METRICS, RayServiceMetrics, ServiceMetrics


def _protocol_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(ServiceMetrics, inspect.isfunction) if not name.startswith("_")]


@pytest.mark.parametrize("name", _protocol_methods())
def test_every_method_of_the_protocol_records_nothing(name: str) -> None:
    arguments = [object() for _ in list(inspect.signature(getattr(ServiceMetrics, name)).parameters)[1:]]
    assert getattr(NO_METRICS, name)(*arguments) is None


def test_the_protocol_is_what_the_ray_metrics_implement() -> None:
    assert all(callable(getattr(RayServiceMetrics, name, None)) for name in _protocol_methods())


def test_a_name_the_protocol_lacks_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        NO_METRICS.rpc_finishd  # type: ignore[attr-defined]  # noqa: B018
