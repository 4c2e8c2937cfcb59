"""A Locust user that speaks gRPC: locust has HTTP users only, so this one reports its own calls.

``GrpcUser`` opens one synchronous gRPC channel to ``self.host`` (``HOST:PORT``, locust's
``--host``) and sends the ``("application", ...)`` metadata Ray Serve's gRPC proxy routes by,
plus ``authorization: Bearer <token>`` when ``token`` is set.
Every call is reported through ``environment.events.request`` with ``request_type="grpc"``:
a call that ends with a non-OK status is a failure whose entry name carries the status code
(``WeakModel.Complete [UNAVAILABLE]``), so each code gets its own row in the report.

gRPC's blocking calls must cooperate with gevent (locust runs users as greenlets), hence
``grpc.experimental.gevent.init_gevent()`` before any channel exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User

grpc_gevent.init_gevent()

REQUEST_TYPE = "grpc"
# Transfer.Run sends problems inline and streams results back; raise gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 2**20


class _Message(Protocol):
    def ByteSize(self) -> int: ...  # noqa: N802 - protobuf's name


Response = TypeVar("Response", bound=_Message)


class GrpcStatusError(Exception):
    """A call that ended with a non-OK gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class UnexpectedStreamError(Exception):
    """A stream ended without the message that defines one of its timed milestones."""


def failure_name(name: str, code: grpc.StatusCode) -> str:
    """The report entry of a failed call: the RPC's entry with the status code appended."""
    return f"{name} [{code.name}]"


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


class GrpcUser(User):
    """Base class of gRPC users. ``application``, ``token`` and ``timeout_s`` may be overridden."""

    abstract = True
    application = "cot_transfer"
    token: str | None = None
    timeout_s: float = 300.0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        if not self.host:
            raise ValueError("GrpcUser needs --host HOST:PORT (the gRPC proxy's address)")
        self.channel = grpc.insecure_channel(
            self.host,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        auth = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        self.metadata: tuple[tuple[str, str], ...] = (("application", self.application), *auth)

    def on_stop(self) -> None:
        self.channel.close()

    def fire(
        self,
        name: str,
        response_time_ms: float,
        response_length: int = 0,
        exception: BaseException | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=response_time_ms,
            response_length=response_length,
            exception=exception,
            context={},
        )

    def fire_error(self, name: str, started: float, error: grpc.RpcError) -> None:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
        self.fire(failure_name(name, code), elapsed_ms(started), exception=GrpcStatusError(code, details))

    def unary(self, name: str, method: Callable[..., Response], request: Any) -> Response | None:
        """Calls a unary method and reports it; returns the response, or None after a failure."""
        started = time.perf_counter()
        try:
            response = method(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.RpcError as error:
            self.fire_error(name, started, error)
            return None
        self.fire(name, elapsed_ms(started), response.ByteSize())
        return response

    def server_stream(
        self,
        name: str,
        method: Callable[..., Iterable[Any]],
        request: Any,
        milestones: dict[str, Callable[[Any], bool]] | None = None,
    ) -> list[Any] | None:
        """Consumes a server stream and reports it.

        ``name`` times the whole stream (first byte out to last message in). Each milestone
        ``{entry_name: predicate}`` is reported as its own entry, timed from the start to the
        first message the predicate accepts (e.g. the first prefix). A stream that fails or
        ends before a milestone reports that milestone as failed too. Returns the messages, or
        None after a failure.
        """
        pending = dict(milestones or {})
        messages: list[Any] = []
        size = 0
        started = time.perf_counter()
        stream: Iterator[Any] = iter(method(request, timeout=self.timeout_s, metadata=self.metadata))
        try:
            for message in stream:
                messages.append(message)
                size += message.ByteSize()
                for milestone, reached in list(pending.items()):
                    if reached(message):
                        self.fire(milestone, elapsed_ms(started), size)
                        del pending[milestone]
        except grpc.RpcError as error:
            for milestone in pending:
                self.fire_error(milestone, started, error)
            self.fire_error(name, started, error)
            return None
        finally:
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()
        total_ms = elapsed_ms(started)
        for milestone in pending:
            self.fire(milestone, total_ms, exception=UnexpectedStreamError(f"the stream ended without {milestone!r}"))
        self.fire(name, total_ms, size)
        return messages
