"""Locust load test of the cot-transfer gRPC API.

    locust -f loadtests/locustfile.py --host 127.0.0.1:9000 --headless -u 4 -r 2 -t 30s

or, with CSV and HTML reports and a summary, ``python -m loadtests.run --host ...``.

One user class, ``CotTransferUser``, mixes three calls by weight:

* ``WeakModel.Complete`` (``--complete-weight``): one unary call, ``--n`` samples of a problem
  drawn from ``--problems`` (no prefix: the weak model starts alone);
* ``StrongModel.StreamPrefixes`` (``--stream-weight``): reported twice, as
  ``StrongModel.StreamPrefixes: first prefix`` (time to the first prefix, i.e. the whole CoT
  generated and cut) and ``StrongModel.StreamPrefixes: stream`` (the whole stream);
* ``Transfer.Run`` (``--run-weight``): a small experiment (``--run-problems`` problems,
  ``--run-fractions``, ``--run-n`` samples), reported as ``Transfer.Run: first result`` and
  ``Transfer.Run: stream``.

Every option may also come from an environment variable (``COT_LOAD_COMPLETE_WEIGHT``, ...,
listed with ``--help``). The bearer token, when the service requires one, is read from the
environment variable ``--token-env`` names (``COT_TRANSFER_TOKEN``), never from the command
line. A weight of 0 disables a call. Each user first makes every enabled
call once (so even a short run covers all of them), then picks calls at random by weight.
A call that ends with a gRPC error status is a failure named after the RPC and the code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from locust import events, task

from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.datasets import load_problems
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from loadtests.grpc_user import GrpcUser
from loadtests.names import BAD_RESPONSE, COMPLETE, FIRST_PREFIX, FIRST_RESULT, RUN, STREAM

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"

KINDS = ("complete", "stream", "run")


class BadResponseError(Exception):
    """A call succeeded but its response does not hold what the request asked for."""


def parse_fractions(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("cot-transfer", "the gRPC calls and their mix")

    def option(name: str, **settings: Any) -> None:
        # Every option's environment variable is its name under COT_LOAD_ (``--run-n``: COT_LOAD_RUN_N).
        group.add_argument(f"--{name}", env_var="COT_LOAD_" + name.upper().replace("-", "_"), **settings)

    for kind, default in zip(KINDS, (4, 1, 1), strict=True):
        option(
            f"{kind}-weight",
            type=int,
            default=default,
            help=f"relative weight of the {kind} call; 0 disables it (default {default})",
        )
    option(
        "problems",
        default=str(DEFAULT_PROBLEMS),
        help="JSONL problems the calls draw from (default datasets/testbed-demo.jsonl)",
    )
    option("n", type=int, default=4, help="samples per Complete call")
    option("max-tokens", type=int, default=0, help="token budget of every generation; 0 keeps the service's default")
    option("stream-fractions", default="0,0.5,1", help="fractions of StreamPrefixes calls")
    option("run-problems", type=int, default=1, help="problems per Transfer.Run")
    option("run-fractions", default="0,0.5,1", help="fractions of Transfer.Run")
    option("run-n", type=int, default=2, help="samples per Transfer.Run row")
    option("grader", default="", help="grader name (service default)")
    option("grpc-timeout", type=float, default=300.0, help="deadline of a call (s)")
    option("application", default="cot_transfer", help="Ray Serve application name")
    option(
        "token-env",
        default="COT_TRANSFER_TOKEN",
        help="environment variable whose value is sent as the bearer token, when set (default COT_TRANSFER_TOKEN)",
    )
    option("wait-s", type=float, default=0.0, help="pause of a user between calls (s)")


class CotTransferUser(GrpcUser):
    """Mixes Complete, StreamPrefixes and Transfer.Run calls by the configured weights."""

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        if options is not None:
            self.application = options.application
            self.timeout_s = options.grpc_timeout
            self.token = os.environ.get(options.token_env) or None
        super().__init__(environment)
        self.options = options
        self.weak = pb_grpc.WeakModelStub(self.channel)
        self.strong = pb_grpc.StrongModelStub(self.channel)
        self.transfer = pb_grpc.TransferStub(self.channel)
        self.problems: list[Problem] = _problems(self._option("problems", str(DEFAULT_PROBLEMS)))
        calls = {"complete": self.call_complete, "stream": self.call_stream_prefixes, "run": self.call_run}
        weights = {kind: int(self._option(f"{kind}_weight", 1)) for kind in KINDS}
        if any(weight < 0 for weight in weights.values()) or not any(weights.values()):
            raise ValueError(f"call weights must be >= 0 and not all 0, got {weights}")
        self.calls = [calls[kind] for kind in KINDS if weights[kind] > 0]
        self.weights = [weights[kind] for kind in KINDS if weights[kind] > 0]
        self.first_pass = list(self.calls)

    def _option(self, name: str, default: Any) -> Any:
        return getattr(self.options, name, default) if self.options is not None else default

    def wait_time(self) -> float:
        return float(self._option("wait_s", 0.0))

    @task
    def mixed(self) -> None:
        """Every enabled call once, then calls drawn by weight."""
        call = self.first_pass.pop(0) if self.first_pass else random.choices(self.calls, self.weights)[0]
        call()

    def sampling(self) -> pb.SamplingParams:
        max_tokens = int(self._option("max_tokens", 0))
        return pb.SamplingParams(max_tokens=max_tokens) if max_tokens > 0 else pb.SamplingParams()

    def call_complete(self) -> None:
        problem = random.choice(self.problems)
        n = int(self._option("n", 4))
        request = pb.CompleteRequest(
            problem=problem.problem,
            n=n,
            sampling=self.sampling(),
            reference_answer=problem.answer,
            grader=self._option("grader", ""),
        )
        response = self.unary(COMPLETE, self.weak.Complete, request)
        if response is not None and len(response.completions) != n:
            self.bad_response(COMPLETE, f"asked for {n} completions, got {len(response.completions)}")

    def call_stream_prefixes(self) -> None:
        problem = random.choice(self.problems)
        fractions = parse_fractions(self._option("stream_fractions", "0,0.5,1"))
        request = pb.StreamPrefixesRequest(
            problem=problem.problem, fractions=fractions, sampling=self.sampling(), grader=self._option("grader", "")
        )
        messages = self.server_stream(
            STREAM,
            self.strong.StreamPrefixes,
            request,
            milestones={FIRST_PREFIX: lambda message: message.WhichOneof("event") == "prefix"},
        )
        if messages is None:
            return
        prefixes = sum(1 for message in messages if message.WhichOneof("event") == "prefix")
        if prefixes != len(set(fractions)) or messages[-1].WhichOneof("event") != "answer":
            self.bad_response(STREAM, f"{prefixes} prefixes for {len(set(fractions))} fractions, or no answer last")

    def call_run(self) -> None:
        count = min(int(self._option("run_problems", 1)), len(self.problems))
        chosen = random.sample(self.problems, count)
        request = pb.RunRequest(
            problems=[pb.Problem(id=problem.id, problem=problem.problem, answer=problem.answer) for problem in chosen],
            fractions=parse_fractions(self._option("run_fractions", "0,0.5,1")),
            n=int(self._option("run_n", 2)),
            strong_sampling=self.sampling(),
            weak_sampling=self.sampling(),
            grader=self._option("grader", ""),
        )
        messages = self.server_stream(
            RUN,
            self.transfer.Run,
            request,
            milestones={FIRST_RESULT: lambda message: message.WhichOneof("event") == "result"},
        )
        if messages is not None and messages[-1].WhichOneof("event") != "summary":
            self.bad_response(RUN, "the stream did not end with a summary")

    def bad_response(self, name: str, message: str) -> None:
        self.fire(f"{name} [{BAD_RESPONSE}]", 0.0, exception=BadResponseError(message))


_PROBLEM_CACHE: dict[str, list[Problem]] = {}


def _problems(path: str) -> list[Problem]:
    """Loaded once per process, shared by all users."""
    if path not in _PROBLEM_CACHE:
        problems = load_problems(path)
        if not problems:
            raise ValueError(f"{path} holds no problems")
        _PROBLEM_CACHE[path] = problems
    return _PROBLEM_CACHE[path]
