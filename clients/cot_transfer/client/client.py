"""The async client: typed calls, deadlines, keepalive, and retry with backoff on transient statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from cot_transfer.client.convert import (
    Sampling,
    completion_result_from_proto,
    mode_to_proto,
    problem_to_proto,
    sampling_plan_to_proto,
    service_info_from_proto,
    strong_event_from_proto,
    thresholds_to_proto,
    transfer_event_from_proto,
)
from cot_transfer.client.keepalive import Keepalive
from cot_transfer.client.retry import RETRYABLE_CODES, RetryPolicy, RpcFailedError, retry_unary
from cot_transfer.domain.receivers import FREE
from cot_transfer.domain.requests import (
    CompletionResult,
    FractionResult,
    Problem,
    ProblemError,
    ResumedProblem,
    ServiceInfo,
    StrongCot,
    StrongEvent,
)
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.steps import CutMode, StepBoundary
from cot_transfer.domain.transfer import RunSummary, Thresholds
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from cot_transfer.wire.messages import CUT_TO_PROTO, STEP_BOUNDARY_TO_PROTO

__all__ = [
    "MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "UNARY_TIMEOUT_S",
    "CotTransferClient",
    "RetryPolicy",
    "RpcFailedError",
]

# Transfer.Run sends every problem inline; raise gRPC's 4 MiB default for large datasets.
MAX_MESSAGE_BYTES = 64 * 2**20
SERVICES = ("cot_transfer.v1.StrongModel", "cot_transfer.v1.WeakModel", "cot_transfer.v1.Transfer")
# The default deadline of a single-response call (GetInfo, Complete): one that outlasts it is taken
# as lost to a wedged server. A Complete of many long samples on a busy GPU ends well inside it.
UNARY_TIMEOUT_S = 600.0


class CotTransferClient:
    """Client of a cot-transfer service (Ray Serve's gRPC proxy or any compatible server).

    Use as ``async with CotTransferClient("host:9000") as client: ...``.
    """

    def __init__(
        self,
        target: str,
        *,
        application: str = "cot_transfer",
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        unary_timeout_s: float | None = UNARY_TIMEOUT_S,
        keepalive: Keepalive | None = None,
    ) -> None:
        """``credentials``: TLS, e.g. ``grpc.ssl_channel_credentials(root_certificates)``; plaintext when
        None. ``token``: sent as ``authorization: Bearer <token>`` on every call.

        Deadlines, the first given of: the call's own ``timeout_s``; this ``timeout_s``, for every
        call, streams included; ``unary_timeout_s``, for single-response calls only. A stream
        gets none by default, since a Run may rightly take hours: ``keepalive`` (default
        ``Keepalive()``) finds a connection that died under it, and the call fails UNAVAILABLE."""
        self._retry = retry or RetryPolicy()
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", self._retry.service_config(SERVICES)),
            # gRPC stops retrying a call whose request outgrows this buffer (256 KiB by default); a
            # Run request holds a whole dataset, so let every request it may send stay retryable.
            ("grpc.per_rpc_retry_buffer_size", MAX_MESSAGE_BYTES),
            *(keepalive or Keepalive()).channel_options(),
        ]
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        # Ray Serve routes a gRPC call to an application by this metadata key.
        auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._metadata = (("application", application), *auth, *metadata)
        self._timeout_s = timeout_s
        self._unary_timeout_s = unary_timeout_s
        self._strong = pb_grpc.StrongModelStub(self._channel)
        self._weak = pb_grpc.WeakModelStub(self._channel)
        self._transfer = pb_grpc.TransferStub(self._channel)

    async def __aenter__(self) -> CotTransferClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    def _unary_timeout(self, timeout_s: float | None) -> float | None:
        for timeout in (timeout_s, self._timeout_s):
            if timeout is not None:
                return timeout
        return self._unary_timeout_s

    def _stream_timeout(self, timeout_s: float | None) -> float | None:
        return timeout_s if timeout_s is not None else self._timeout_s

    async def get_info(self, timeout_s: float | None = None) -> ServiceInfo:
        """The served models, graders and request limits."""
        timeout = self._unary_timeout(timeout_s)
        response = await retry_unary(
            lambda remaining: self._transfer.GetInfo(pb.GetInfoRequest(), timeout=remaining, metadata=self._metadata),
            timeout,
            self._retry,
            "GetInfo",
        )
        return service_info_from_proto(response)

    async def complete(
        self,
        problem: str,
        *,
        reference_answer: str,
        prefix: str = "",
        n: int = 1,
        sampling: Sampling | None = None,
        grader: str = "",
        timeout_s: float | None = None,
        prefix_token_ids: Sequence[int] = (),
        receiver: str = "",
        mode: str = FREE,
    ) -> CompletionResult:
        """``prefix_token_ids``: the prefix's strong-model tokens (``Prefix.token_ids``); a weak
        model with the same tokenizer takes them as they are, any other re-tokenises ``prefix``.
        ``receiver``: the served model that completes (GetInfo's ``models``; "" is the weak model);
        ``mode``: ``free`` or ``force_answer``."""
        request = pb.CompleteRequest(
            problem=problem,
            prefix=prefix,
            n=n,
            sampling=(sampling or Sampling()).to_proto(),
            reference_answer=reference_answer,
            grader=grader,
            prefix_token_ids=prefix_token_ids,
            receiver=receiver,
            # Free stays unset, so a service from before answer modes reads the request as always.
            mode=pb.ANSWER_MODE_UNSPECIFIED if mode == FREE else mode_to_proto(mode),
        )
        timeout = self._unary_timeout(timeout_s)
        response = await retry_unary(
            lambda remaining: self._weak.Complete(request, timeout=remaining, metadata=self._metadata),
            timeout,
            self._retry,
            "Complete",
        )
        return completion_result_from_proto(response)

    async def stream_prefixes(
        self,
        problem: str,
        fractions: Sequence[float],
        *,
        sampling: Sampling | None = None,
        grader: str = "",
        timeout_s: float | None = None,
    ) -> AsyncIterator[StrongEvent]:
        request = pb.StreamPrefixesRequest(
            problem=problem, fractions=list(fractions), sampling=(sampling or Sampling()).to_proto(), grader=grader
        )
        call = self._strong.StreamPrefixes(request, timeout=self._stream_timeout(timeout_s), metadata=self._metadata)
        async for message in _stream(call):
            yield strong_event_from_proto(message)

    async def run_transfer(
        self,
        problems: Sequence[Problem],
        fractions: Sequence[float],
        *,
        n: int,
        strong_sampling: Sampling | None = None,
        weak_sampling: Sampling | None = None,
        thresholds: Thresholds | None = None,
        grader: str = "",
        experiment_id: str = "",
        timeout_s: float | None = None,
        receivers: Sequence[str] = (),
        modes: Sequence[str] = (),
        cut: CutMode = CutMode.TOKEN,
        step_boundary: StepBoundary = StepBoundary.LINE,
        keep_completions: bool = False,
        cot_tokenizer: str = "",
        sampling_plan: SamplingPlan | None = None,
        resumed: Mapping[str, ResumedProblem] | None = None,
        take_over: bool = False,
    ) -> AsyncIterator[StrongCot | FractionResult | ProblemError | RunSummary]:
        """``receivers``: the served models that complete every prefix (none: the weak model);
        ``modes``: ``free`` and/or ``force_answer`` (none: free). ``cut`` and ``step_boundary``:
        where the CoTs are cut (``cot_transfer.domain.steps``); problems with a ``cot`` bring
        their CoT and the strong model is not called for them. ``resumed``: problem id -> the
        prefixes an earlier run returned and the rows still missing; those problems are completed
        on their stored prefixes, only those rows, drawn as any other row of the run.
        ``take_over``: a run still going under ``experiment_id`` is ended (ABORTED) for this one,
        instead of this one failing with ALREADY_EXISTS (a resume of a folder whose killed client's
        call the service still runs)."""
        request = pb.RunRequest(
            problems=[problem_to_proto(problem, (resumed or {}).get(problem.id)) for problem in problems],
            fractions=list(fractions),
            n=n,
            strong_sampling=(strong_sampling or Sampling()).to_proto(),
            weak_sampling=(weak_sampling or Sampling()).to_proto(),
            thresholds=thresholds_to_proto(thresholds),
            grader=grader,
            experiment_id=experiment_id,
            receivers=list(receivers),
            modes=[mode_to_proto(mode) for mode in modes],
            cut=CUT_TO_PROTO[cut],
            step_boundary=STEP_BOUNDARY_TO_PROTO[step_boundary],
            keep_completions=keep_completions,
            cot_tokenizer=cot_tokenizer,
            take_over=take_over,
            # Adaptive sampling: rows drawn in rounds up to the plan's n_max (then n is n_max).
            sampling_plan=sampling_plan_to_proto(sampling_plan) if sampling_plan is not None else None,
        )
        call = self._transfer.Run(request, timeout=self._stream_timeout(timeout_s), metadata=self._metadata)
        async for message in _stream(call):
            yield transfer_event_from_proto(message)


async def _stream(call: grpc.aio.UnaryStreamCall[Any, Any]) -> AsyncIterator[Any]:
    """The stream's messages; a failure leaves as ``RpcFailedError``.

    Streams get gRPC's UNAVAILABLE retries only until the server's response headers arrive (a
    grpc.aio server, Ray Serve's proxy among them, sends them with the first message unless it
    sends them early): from then on the call is
    committed (part of its result may have been delivered), so gRPC cannot replay it transparently,
    and neither does this: a caller that can resume, like the experiment runner with its results
    folder, retries knowing what it already has. Shed RESOURCE_EXHAUSTED is not retried here either
    (the runner does it with its own, longer backoff)."""
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as error:
        raise RpcFailedError(error.code(), error.details() or "") from None
    finally:
        call.cancel()
