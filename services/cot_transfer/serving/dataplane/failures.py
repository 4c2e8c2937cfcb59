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


@dataclass(frozen=True)
class Failure:
    code: str  # a gRPC status code's name: INVALID_ARGUMENT, UNAVAILABLE, ...
    details: str


def _ray_code(error: BaseException) -> str | None:
    """Codes for the errors Ray Serve raises between deployments."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError

    if isinstance(error, BackPressureError):
        return "RESOURCE_EXHAUSTED"
    if isinstance(error, (DeploymentUnavailableError, ActorDiedError, ActorUnavailableError, RayActorError)):
        return "UNAVAILABLE"
    if isinstance(error, RequestCancelledError):
        return "CANCELLED"
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
        return Failure(cause.code, cause.message)
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
