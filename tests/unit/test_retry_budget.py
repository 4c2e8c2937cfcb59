"""The run's retry budget: sized by time, long enough for a GPU model reload by default, set with
`run --retry-budget`, and a run outlasts an outage its budget covers (the runner's retry loop,
against the service's own RPC bodies behind a Run that is UNAVAILABLE for a while; no Ray)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from cot_transfer.cli.main import build_parser
from cot_transfer.cli.run import run_retry
from cot_transfer.client import CotTransferClient, RetryPolicy, RpcFailedError
from cot_transfer.client.retry import RUN_RETRY_BUDGET_S
from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.serving.edge.rpc import TransferService
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.conftest import IN_PROCESS_MAX_MODEL_LEN, LOCAL_CONFIG, InProcessService
from tests.fakes import ScriptedEngine


@pytest.mark.parametrize("budget_s", [0.5, 60.0, 600.0, RUN_RETRY_BUDGET_S, 3600.0])
def test_a_policy_lasting_a_budget_has_the_fewest_attempts_whose_pauses_cover_it(budget_s: float) -> None:
    policy = RetryPolicy.lasting(budget_s)
    assert policy.min_total_pause_s() >= budget_s
    assert RetryPolicy(policy.max_attempts - 1, 2.0, 30.0, 2.0).min_total_pause_s() < budget_s


def test_each_pause_is_between_half_its_ceiling_and_the_ceiling_which_is_capped() -> None:
    policy = RetryPolicy.lasting(RUN_RETRY_BUDGET_S)
    for attempt in range(policy.max_attempts - 1):
        ceiling = min(30.0, 2.0 * 2.0**attempt)
        pauses = [policy.backoff_s(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= pause <= ceiling for pause in pauses)
    # So the pauses a run sleeps add up to the budget at least, whatever the draws.
    assert sum(policy.backoff_s(attempt) for attempt in range(policy.max_attempts - 1)) >= RUN_RETRY_BUDGET_S


def test_the_default_budget_outlasts_a_gpu_model_reload() -> None:
    assert RUN_RETRY_BUDGET_S >= 600
    assert run_retry(build_parser().parse_args(["run", "--address", "127.0.0.1:1"])).min_total_pause_s() >= 600


def test_run_takes_the_budget_from_its_flag() -> None:
    args = build_parser().parse_args(["run", "--address", "127.0.0.1:1", "--retry-budget", "1800"])
    assert run_retry(args) == RetryPolicy.lasting(1800)


@pytest.mark.parametrize("budget", ["0", "-5", "inf", "nan", "soon"])
def test_a_budget_that_is_no_positive_time_is_a_usage_error(budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", "--address", "127.0.0.1:1", "--retry-budget", budget])
    assert exited.value.code == 2
    assert "--retry-budget" in capsys.readouterr().err


class Reloading:
    """The service's Transfer RPCs, with Run UNAVAILABLE until ``down_s`` after the first one (a
    replica reloading its model)."""

    def __init__(self, service: TransferService, down_s: float) -> None:
        self.service = service
        self.down_s = down_s
        self.up_at: float | None = None
        self.refused = 0

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.GetInfoResponse:  # noqa: N802
        return await self.service.GetInfo(request, context)

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunResponse]:  # noqa: N802
        if self.up_at is None:
            self.up_at = time.monotonic() + self.down_s
        if time.monotonic() < self.up_at:
            self.refused += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no replica: reloading the model")
        async for event in self.service.Run(request, context):
            yield event


# The default policy's shape scaled down 200 times: pauses of 10 ms growing to 150 ms.
SCALED = {"initial_backoff_s": 0.01, "max_backoff_s": 0.15}
# gRPC's own UNAVAILABLE retries off, so every retry counted is the runner's.
NO_CHANNEL_RETRY = RetryPolicy(max_attempts=1)


@pytest.mark.parametrize(("budget_s", "survives"), [(1.5, True), (0.2, False)])
async def test_a_run_outlasts_an_outage_its_budget_covers(tmp_path: Path, budget_s: float, survives: bool) -> None:
    strong = ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    weak = ScriptedEngine(["Answer: 3"], max_model_len=IN_PROCESS_MAX_MODEL_LEN)
    reloading = Reloading(InProcessService(strong, {LOCAL_CONFIG.weak.engine.name: weak}).servicer, down_s=0.6)
    server = grpc.aio.server()
    pb_grpc.add_TransferServicer_to_server(reloading, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    problems = [Problem(f"p{index}", f"{index}+2", "3") for index in range(3)]
    out = tmp_path / "run"
    try:
        async with CotTransferClient(f"127.0.0.1:{port}", retry=NO_CHANNEL_RETRY) as client:
            run = run_experiment(
                client,
                problems,
                ExperimentSettings(fractions=(1.0,), n=1),
                out,
                retry=RetryPolicy.lasting(budget_s, **SCALED),
            )
            if not survives:
                with pytest.raises(RpcFailedError) as caught:
                    await run
                assert caught.value.code == grpc.StatusCode.UNAVAILABLE
                return
            summary = await run
    finally:
        await server.stop(None)
    assert reloading.refused >= 3
    assert summary["unfinished_problems"] == []
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((row["problem_id"], row["fraction"]) for row in rows) == [
        (problem.id, fraction) for problem in problems for fraction in (0.0, 1.0)
    ]
