"""What went wrong, as a code name and the details a caller may see.

Every failure of the service is named here, once: a domain error by its own ``code``, a timeout
or cancellation by gRPC's name for it, an error Ray Serve raises between deployments by what the
caller can do about it. The names are gRPC's; only the edge (``edge.status``) turns a name into a
gRPC status code. Details name the field for client errors and never carry exception text or
tracebacks for server errors (those go to the log, under an incident id the caller sees).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from cot_transfer.domain.errors import CotTransferError

logger = logging.getLogger(__name__)

INTERNAL = "INTERNAL"

GENERIC_DETAILS = {
    "DEADLINE_EXCEEDED": "the deadline passed before the work finished",
    "CANCELLED": "the call was cancelled",
    "RESOURCE_EXHAUSTED": "the service is at capacity; retry with backoff",
    "UNAVAILABLE": "a model replica is unavailable; retry with backoff",
}


# Details travel in the grpc-message trailer. Clients and proxies cap the header block (gRPC's
# default is 8 KiB; over it the client saw RESOURCE_EXHAUSTED, which it retries), while
# an error may echo a name or value the caller sent, of any length.
MAX_DETAILS_CHARS = 1024


def bounded_details(details: str) -> str:
    """``details`` cut to ``MAX_DETAILS_CHARS``, saying how much was left out."""
    if len(details) <= MAX_DETAILS_CHARS:
        return details
    kept = details[: MAX_DETAILS_CHARS - 40]
    return f"{kept}... ({len(details) - len(kept)} more characters)"


@dataclass(frozen=True)
class Failure:
    code: str  # a gRPC status code's name: INVALID_ARGUMENT, UNAVAILABLE, ...
    details: str


def _ray_code(error: BaseException) -> str | None:
    """Codes for the errors Ray and Ray Serve raise between deployments.

    A failure of Ray itself (a dead actor, worker, raylet or node, an object lost with its owner,
    a placement group removed) says nothing about the request: the same call succeeds once Serve
    has replaced the replica, so it is UNAVAILABLE, which clients retry. INTERNAL would end the
    problem for good on what is, on a cluster, an ordinary event."""
    from ray.exceptions import (
        GetTimeoutError,
        ObjectStoreFullError,
        OutOfMemoryError,
        PendingCallsLimitExceeded,
        RayError,
        RayTaskError,
        TaskCancelledError,
    )
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError

    if isinstance(error, (BackPressureError, PendingCallsLimitExceeded, ObjectStoreFullError)):
        return "RESOURCE_EXHAUSTED"
    if isinstance(error, (RequestCancelledError, TaskCancelledError)):
        return "CANCELLED"
    if isinstance(error, GetTimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(error, OutOfMemoryError):
        # Ray's memory monitor killed the worker: the node was short of memory, not the request wrong.
        return "UNAVAILABLE"
    # A RayTaskError here wraps an exception of our own code that is no domain error: a bug, INTERNAL.
    if isinstance(error, DeploymentUnavailableError):
        return "UNAVAILABLE"
    if isinstance(error, RayError) and not isinstance(error, RayTaskError):
        return "UNAVAILABLE"
    return None


def _domain_cause(error: BaseException) -> BaseException:
    """The domain error inside a Ray task error, so a replica's INVALID_ARGUMENT stays one."""
    from ray.exceptions import RayTaskError

    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        return _domain_cause(error.cause)
    return error


def failure_of(error: BaseException) -> Failure:
    cause = _domain_cause(error)
    if isinstance(cause, CotTransferError):
        return Failure(cause.code, bounded_details(cause.message))
    if isinstance(cause, asyncio.TimeoutError):
        return Failure("DEADLINE_EXCEEDED", GENERIC_DETAILS["DEADLINE_EXCEEDED"])
    if isinstance(cause, asyncio.CancelledError):
        return Failure("CANCELLED", GENERIC_DETAILS["CANCELLED"])
    ray_code = _ray_code(cause)
    if ray_code is not None:
        return Failure(ray_code, GENERIC_DETAILS[ray_code])
    incident = uuid.uuid4().hex[:12]
    logger.error("internal error %s", incident, exc_info=error)
    return Failure(INTERNAL, f"internal error (incident {incident}); the service logs have the details")
