"""A Ray Serve autoscaling policy that scales a model deployment on its engines' waiting queue.

Serve's default policy steers the number of ongoing requests per replica towards
``target_ongoing_requests``. For the weak model that count says little: one request carries
n samples, and how much a replica can hold depends on the KV cache, not on a request count.
The engine knows: sequences it could not schedule wait. This policy adds replicas while the
engines' waiting queue stays above ``waiting_per_replica`` per replica, in proportion to the
demand the running replicas cannot serve, and removes replicas when everything that runs
would fit on fewer of them at ``running_per_replica`` sequences each. Serve applies the
deployment's min/max replicas and its upscale/downscale delays around it.

Replicas report the two numbers through ``record_autoscaling_stats`` (see deployments.py).
"""

from __future__ import annotations

import math
from typing import Any

ENGINE_RUNNING = "engine_running"
ENGINE_WAITING = "engine_waiting"


class EngineQueuePolicy:
    def __init__(self, waiting_per_replica: float = 1.0, running_per_replica: float = 32.0) -> None:
        if waiting_per_replica < 0 or running_per_replica <= 0:
            raise ValueError("waiting_per_replica must be >= 0 and running_per_replica > 0")
        self.waiting_per_replica = waiting_per_replica
        self.running_per_replica = running_per_replica

    def desired_replicas(self, current: int, running: float, waiting: float) -> int:
        current = max(current, 1)
        if waiting > self.waiting_per_replica * current:
            # Saturated replicas serve `running`; the demand is running + waiting.
            served_per_replica = max(running / current, 1.0)
            return max(current + 1, math.ceil((running + waiting) / served_per_replica))
        if waiting == 0:
            fits_on = max(1, math.ceil(running / self.running_per_replica))
            return min(current, fits_on)
        return current

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        running = sum(metrics.get(ENGINE_RUNNING, {}).values())
        waiting = sum(metrics.get(ENGINE_WAITING, {}).values())
        return self.desired_replicas(ctx.current_num_replicas, running, waiting), {}
