"""Ray Serve's own deployment options, passed through from the serving config.

A deployment in the config takes a ``deployment_config`` mapping of ``serve.deployment`` options
(``max_ongoing_requests``, ``autoscaling_config``, ``ray_actor_options``, ``health_check_period_s``,
``graceful_shutdown_timeout_s``, ...), as Ray Serve LLM's ``LLMConfig.deployment_config`` does: the
names are Serve's and the values are checked by Serve's own ``DeploymentConfig``, so a Ray upgrade
brings its new options with no change here. The config's older keys (``resources``, ``autoscaling``,
``max_ongoing_requests``, ...) still work; they are defaults that ``deployment_config`` overrides.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

# The application names its deployments itself: the ingress finds the models by these names.
RESERVED_OPTIONS = frozenset({"name"})


@cache
def serve_deployment_options() -> frozenset[str]:
    """The keyword options ``serve.deployment`` takes in the installed Ray."""
    from ray import serve

    return frozenset(inspect.signature(serve.deployment).parameters) - {"_func_or_class"}


def check_deployment_config(options: Mapping[str, Any], refused: Mapping[str, str] | None = None) -> None:
    """Raises ``ValueError`` for an option Serve does not know, a reserved one, or a bad value.

    ``refused`` maps options this deployment must not take here to the config key to use instead.
    """
    if not options:
        return
    if importlib.util.find_spec("ray") is None:
        # A client-side reader of the config (no server extras): the server checks on load.
        return
    unknown = sorted(set(options) - serve_deployment_options())
    if unknown:
        raise ValueError(f"not options of serve.deployment: {unknown}")
    reserved = sorted(set(options) & RESERVED_OPTIONS)
    if reserved:
        raise ValueError(f"{reserved} are set by the application itself")
    for option, instead in (refused or {}).items():
        if option in options:
            raise ValueError(f"{option}: set {instead} instead")
    # What Ray Serve LLM checks its deployment_config with; the options it does not hold
    # (ray_actor_options, placement groups) are checked by serve.deployment when the app is built.
    from ray.serve._private.config import DeploymentConfig

    DeploymentConfig(**{key: value for key, value in options.items() if key in DeploymentConfig.model_fields})


def merge_options(
    declared: Mapping[str, Any],
    passed: Mapping[str, Any],
    set_keys: Iterable[str],
    sources: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    """``declared`` (from the config's own keys) overridden by ``passed`` (``deployment_config``).

    ``sources`` maps a config key to the Serve options it sets; a key the config file set
    (``set_keys``) and an option it sets given in ``deployment_config`` too is a contradiction.
    """
    explicit = set(set_keys)
    for key, options in sources.items():
        both = sorted(option for option in options if option in passed)
        if key in explicit and both:
            raise ValueError(f"{both} in deployment_config and {key} set both; keep one")
    merged = {**declared, **passed}
    # Serve refuses num_replicas next to autoscaling_config: an explicit count replaces the autoscaler.
    if "num_replicas" in passed and "autoscaling_config" not in passed:
        merged.pop("autoscaling_config", None)
    return merged


def cpu_demand(options: Mapping[str, Any]) -> float:
    """Ray CPUs a deployment built with ``options`` holds at its most replicas."""
    autoscaling = options.get("autoscaling_config") or {}
    replicas = autoscaling.get("max_replicas") if isinstance(autoscaling, Mapping) else autoscaling.max_replicas
    replicas = replicas or options.get("num_replicas") or 1
    # Serve's default for a replica without ray_actor_options is one CPU.
    return float(options.get("ray_actor_options", {}).get("num_cpus", 1.0)) * replicas


def gpu_per_replica(options: Mapping[str, Any]) -> float:
    return float(options.get("ray_actor_options", {}).get("num_gpus", 0.0))
