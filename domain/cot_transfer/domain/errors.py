"""Domain error types.

Each type stands for one kind of failure a caller can act on and carries its code's name
(``code``, gRPC's names); only the service edge turns a name into a gRPC status code, in a single
table (``cot_transfer.serving.edge.status``). They cross Ray process boundaries by pickling, so
every constructor argument is kept in ``args``.
"""

from __future__ import annotations

from typing import ClassVar


class CotTransferError(Exception):
    """Base of every error this project raises on purpose."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _FieldError(CotTransferError):
    def __init__(self, field: str, message: str) -> None:
        Exception.__init__(self, field, message)
        self.field = field
        self.message = f"{field}: {message}"


class InvalidArgumentError(_FieldError):
    """A request field is malformed or out of its allowed range."""

    code: ClassVar[str] = "INVALID_ARGUMENT"


class OutOfRangeError(_FieldError):
    """A request is well formed but exceeds what the model can hold (context length)."""

    code: ClassVar[str] = "OUT_OF_RANGE"


class NotFoundError(CotTransferError):
    """A named thing (grader, model) does not exist."""

    code: ClassVar[str] = "NOT_FOUND"


class OverloadedError(CotTransferError):
    """The service is at capacity; the caller should back off and retry."""

    code: ClassVar[str] = "RESOURCE_EXHAUSTED"


class UnavailableError(CotTransferError):
    """The engine or a downstream deployment cannot serve right now."""

    code: ClassVar[str] = "UNAVAILABLE"


class AlreadyExistsError(CotTransferError):
    """The thing the call would create is there already (an experiment id in use)."""

    code: ClassVar[str] = "ALREADY_EXISTS"


class AbortedError(CotTransferError):
    """The call was ended for another to go on (a run taken over by a resume of its results folder)."""

    code: ClassVar[str] = "ABORTED"


class UnauthenticatedError(CotTransferError):
    """The call carries no credentials where the service requires them."""

    code: ClassVar[str] = "UNAUTHENTICATED"


class PermissionDeniedError(CotTransferError):
    """The call's credentials are not the service's."""

    code: ClassVar[str] = "PERMISSION_DENIED"
