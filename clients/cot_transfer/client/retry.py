"""Which failures the client retries, and how: gRPC's own retry policy plus one explicit rule.

* UNAVAILABLE (no replica, a connection reset, a draining server) is retried by gRPC itself, from
  the channel's service config (``retryPolicy``): exponential backoff with jitter, within the
  call's deadline, for unary and streaming calls alike until the call is committed (the first
  response arrives).
* RESOURCE_EXHAUSTED is two different things on the wire: the service shedding load (retry
  later) and a message larger than a size limit (retrying sends the same bytes to the same
  refusal). gRPC's retry policy matches status codes only, and it retries both kinds, even the
  refusal its own client raises before sending anything (seen with ``GRPC_TRACE=retry`` on
  grpcio 1.85: "CLIENT: Sent message larger than max ... retrying failed call"). So it is not in
  the service config; ``retry_unary`` retries it here, unless the details name a size limit.

A run retries a whole stream from its results on disk (``cot_transfer.experiment.runner``), with a
policy sized by time: ``RetryPolicy.lasting(RUN_RETRY_BUDGET_S)`` keeps trying through a model reload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

T = TypeVar("T")

log = logging.getLogger(__name__)

# gRPC clamps a retry policy's maxAttempts to 5 (gRFC A6): more are not sent.
GRPC_MAX_ATTEMPTS = 5
GRPC_RETRIED_CODES = ("UNAVAILABLE",)
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# gRPC's wording for a message over a size limit, on either side ("CLIENT: Sent message larger
# than max (N vs. M)", "SERVER: Received message larger than max (N vs. M)").
SIZE_REFUSAL_MARKER = "larger than max"
# Ray Serve's gRPC proxy answers a call whose ingress replica died under it with INTERNAL and Ray's
# own text (ActorDiedError: "The actor died unexpectedly before finishing this task ... class_name:
# ServeReplica:..."). That is the cluster losing a process, which the next try survives; the
# service's own INTERNAL, a bug, says "internal error (incident ...)" and is not retried.
REPLICA_LOSS_MARKERS = (
    "The actor died unexpectedly",
    "The actor is dead",
    # ActorUnavailableError, when the replica's node went away: "The actor <id> is unavailable:
    # The actor is temporarily unavailable: RpcError: ... Socket closed ... The task may or may
    # not have been executed on the actor."
    "The actor is temporarily unavailable",
    "may or may not have been executed on the actor",
    "ActorDiedError",
    "ActorUnavailableError",
    "OwnerDiedError",
    "NodeDiedError",
)
# A replica that died is back once its engine has reloaded the weights: tens of seconds on CPU,
# ten minutes and more for a large model on GPU read from network storage.
RUN_RETRY_BUDGET_S = 900.0


class RpcFailedError(Exception):
    """A call ended with a non-OK status; ``code`` and ``details`` are the server's (or gRPC's)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @property
    def size_refusal(self) -> bool:
        """A message over a size limit: the same request can never succeed."""
        return is_size_refusal(self.code, self.details)

    @property
    def retryable(self) -> bool:
        """Transient: the same request may succeed later (a dead replica, shed load)."""
        if is_replica_loss(self.code, self.details):
            return True
        return self.code in RETRYABLE_CODES and not self.size_refusal


def is_replica_loss(code: grpc.StatusCode | None, details: str | None) -> bool:
    """The proxy's INTERNAL for a replica that died under the call (see ``REPLICA_LOSS_MARKERS``)."""
    return code == grpc.StatusCode.INTERNAL and any(marker in (details or "") for marker in REPLICA_LOSS_MARKERS)


def is_size_refusal(code: grpc.StatusCode | None, details: str | None) -> bool:
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and SIZE_REFUSAL_MARKER in (details or "")


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter on UNAVAILABLE and shed RESOURCE_EXHAUSTED.

    ``max_attempts`` caps the calls made for each of the two: gRPC's own retries (UNAVAILABLE)
    are capped at 5 whatever is asked (gRFC A6).
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0

    @classmethod
    def lasting(
        cls, budget_s: float, *, initial_backoff_s: float = 2.0, max_backoff_s: float = 30.0, multiplier: float = 2.0
    ) -> RetryPolicy:
        """The policy with the fewest attempts whose pauses add up to at least ``budget_s``."""
        if not math.isfinite(budget_s) or initial_backoff_s <= 0:
            raise ValueError(f"a retry budget needs a finite time and pauses above 0 s, not {budget_s} s")
        policy = cls(1, initial_backoff_s, max_backoff_s, multiplier)
        while policy.min_total_pause_s() < budget_s:
            policy = cls(policy.max_attempts + 1, initial_backoff_s, max_backoff_s, multiplier)
        return policy

    def ceiling_s(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)

    def backoff_s(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (from 0): between half its ceiling and the
        ceiling. The jitter spreads clients that failed together; the floor makes the time the
        retries cover a lower bound (``min_total_pause_s``), not a chance."""
        ceiling = self.ceiling_s(attempt)
        return random.uniform(ceiling / 2, ceiling)

    def min_total_pause_s(self) -> float:
        """The least time the pauses between all ``max_attempts`` attempts add up to."""
        return sum(self.ceiling_s(attempt) / 2 for attempt in range(self.max_attempts - 1))

    def service_config(self, services: Sequence[str]) -> str:
        """The channel's ``grpc.service_config``: this policy for UNAVAILABLE on ``services``."""
        if self.max_attempts < 2:
            return json.dumps({"methodConfig": []})
        retry_policy = {
            "maxAttempts": min(self.max_attempts, GRPC_MAX_ATTEMPTS),
            "initialBackoff": _duration(self.initial_backoff_s),
            "maxBackoff": _duration(self.max_backoff_s),
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": list(GRPC_RETRIED_CODES),
        }
        return json.dumps(
            {"methodConfig": [{"name": [{"service": service} for service in services], "retryPolicy": retry_policy}]}
        )


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON; gRPC wants a value above zero."""
    return f"{max(seconds, 1e-3):.3f}s"


async def retry_unary(
    call: Callable[[float | None], Awaitable[T]], timeout_s: float | None, policy: RetryPolicy, method: str = ""
) -> T:
    """Awaits ``call(remaining_timeout)``, again after a backoff while it is shed (RESOURCE_EXHAUSTED
    that is no size refusal), until the attempts or the overall deadline run out. Every failure
    leaves as ``RpcFailedError``."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    attempt = 0
    while True:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await call(remaining)
        except grpc.aio.AioRpcError as error:
            failure = RpcFailedError(error.code(), error.details() or "")
        attempt += 1
        pause = policy.backoff_s(attempt - 1)
        out_of_time = deadline is not None and loop.time() + pause >= deadline
        # UNAVAILABLE reaching here has had gRPC's retries already.
        shed = failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED and not failure.size_refusal
        if not shed or attempt >= policy.max_attempts or out_of_time:
            raise failure
        log.debug("%s shed (%s); retry %d in %.2f s", method, failure.details, attempt, pause)
        await asyncio.sleep(pause)
