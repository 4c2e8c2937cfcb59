"""The one mapping from exception types to gRPC status codes.

Every RPC of the service goes through ``status_for``; nothing else decides a status code.
Details name the field and the allowed range for client errors and never carry exception
text or tracebacks for server errors (those go to the log, under an id the client sees).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc

from cot_transfer.domain.errors import (
    AlreadyExistsError,
    CotTransferError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    OverloadedError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)

logger = logging.getLogger(__name__)

_CODE_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (asyncio.TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (asyncio.CancelledError, grpc.StatusCode.CANCELLED),
)


def _ray_code(error: BaseException) -> grpc.StatusCode | None:
    """Codes for the errors Ray Serve raises between deployments."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError

    if isinstance(error, BackPressureError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, (DeploymentUnavailableError, ActorDiedError, ActorUnavailableError, RayActorError)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(error, RequestCancelledError):
        return grpc.StatusCode.CANCELLED
    return None


def _domain_cause(error: BaseException) -> BaseException:
    """The domain error inside a Ray task error, so a replica's INVALID_ARGUMENT stays one."""
    from ray.exceptions import RayTaskError

    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        return _domain_cause(error.cause)
    return error


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    cause = _domain_cause(error)
    for error_type, code in _CODE_BY_ERROR:
        if isinstance(cause, error_type):
            if isinstance(cause, CotTransferError):
                return code, cause.message
            return code, _GENERIC_DETAILS[code]
    ray_code = _ray_code(cause)
    if ray_code is not None:
        return ray_code, _GENERIC_DETAILS[ray_code]
    incident = uuid.uuid4().hex[:12]
    logger.error("internal error %s", incident, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the service logs have the details"


_GENERIC_DETAILS = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "the deadline passed before the work finished",
    grpc.StatusCode.CANCELLED: "the call was cancelled",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the service is at capacity; retry with backoff",
    grpc.StatusCode.UNAVAILABLE: "a model replica is unavailable; retry with backoff",
}
