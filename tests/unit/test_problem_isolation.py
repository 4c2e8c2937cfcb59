"""One bad problem never sinks a run: the real client, runner and results folder against an
in-process gRPC server built from the service's own edge, TransferRunner and model servers over
the scripted engine (no Ray, no vLLM)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
import pytest

from cot_transfer.client import CotTransferClient, RetryPolicy
from cot_transfer.domain.requests import Problem, ProblemError
from cot_transfer.experiment.problem_errors import ERRORS_FILE
from cot_transfer.experiment.run_folder import RunFolderError, folder_lock
from cot_transfer.experiment.runner import ExperimentSettings, run_experiment
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.dataplane.fanout import TransferRunner
from cot_transfer.serving.edge import decode, encode
from cot_transfer.serving.replicas.receiver_server import WeakModelServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from cot_transfer.v1 import cot_transfer_pb2 as pb
from cot_transfer.v1 import cot_transfer_pb2_grpc as pb_grpc
from tests.fakes import ScriptedEngine

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
MAX_MODEL_LEN = 512
FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


class InProcessService(pb_grpc.TransferServicer, pb_grpc.WeakModelServicer):
    """Transfer.Run and WeakModel.Complete as the ingress serves them, minus Ray."""

    def __init__(self) -> None:
        self.strong = StrongModelServer(ScriptedEngine(["1+2 makes 3. Answer: 3"], max_model_len=MAX_MODEL_LEN))
        self.weak = WeakModelServer(ScriptedEngine(["Answer: 3"], max_model_len=MAX_MODEL_LEN))
        self.runner = TransferRunner(self.strong.stream_prefixes, self.weak.complete, max_concurrent_completions=8)
        self.run_problems: list[list[str]] = []
        self.completes = 0

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.GetInfoResponse:  # noqa: N802
        return encode.service_info_to_proto(CONFIG, {"strong": "f-strong", "weak": "f-weak"})

    async def Run(  # noqa: N802
        self, request: pb.RunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunResponse]:
        self.run_problems.append([problem.id for problem in request.problems])
        async for event in self.runner.run(decode.transfer_request_from_proto(request, CONFIG)):
            yield encode.transfer_event_to_proto(event)

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:  # noqa: N802
        self.completes += 1
        result = await self.weak.complete(decode.completion_request_from_proto(request, CONFIG))
        return encode.completion_result_to_proto(result)


@pytest.fixture
async def service() -> AsyncIterator[tuple[InProcessService, str]]:
    servicer = InProcessService()
    server = grpc.aio.server()
    pb_grpc.add_TransferServicer_to_server(servicer, server)
    pb_grpc.add_WeakModelServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


def problems() -> list[Problem]:
    records = [Problem(f"p{index}", f"{index}+2", "3") for index in range(8)]
    # Past the context: the strong model cannot even read it.
    records[5] = Problem("p5", "9" * (MAX_MODEL_LEN * 2), "3")
    return records


SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2)


async def test_a_problem_past_the_context_is_one_error_and_the_other_seven_finish(
    service: tuple[InProcessService, str], tmp_path: Path
) -> None:
    servicer, address = service
    out = tmp_path / "run"
    async with CotTransferClient(address, retry=FAST) as client:
        summary = await run_experiment(client, problems(), SETTINGS, out, retry=FAST)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {row["problem_id"] for row in rows} == {f"p{index}" for index in range(8)} - {"p5"}
    assert len(rows) == 7 * 3
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert [(error["problem_id"], error["code"], error["permanent"]) for error in errors] == [
        ("p5", "OUT_OF_RANGE", True)
    ]
    assert [error["problem_id"] for error in summary["failed_problems"]] == ["p5"]
    assert summary["problem_errors"] == 1 and summary["n_problems"] == 7  # the report leaves it out
    assert servicer.run_problems == [[f"p{index}" for index in range(8)]]

    # The resume has nothing left to do: the failed problem is final, not run again.
    async with CotTransferClient(address, retry=FAST) as client:
        again = await run_experiment(client, problems(), SETTINGS, out, resume=True, retry=FAST)
    assert servicer.run_problems == [[f"p{index}" for index in range(8)]]
    assert servicer.completes == 0
    assert [error["problem_id"] for error in again["failed_problems"]] == ["p5"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 7 * 3


async def test_the_wire_carries_the_problem_error_and_the_summary_counts_it(
    service: tuple[InProcessService, str],
) -> None:
    _, address = service
    async with CotTransferClient(address, retry=FAST) as client:
        events = [event async for event in client.run_transfer(problems(), SETTINGS.measured_fractions(), n=2)]
    errors = [event for event in events if isinstance(event, ProblemError)]
    assert len(errors) == 1 and errors[0].problem_id == "p5" and errors[0].permanent
    assert "p5" not in {getattr(event, "problem_id", None) for event in events if not isinstance(event, ProblemError)}
    summary = events[-1]
    assert getattr(summary, "problem_errors", None) == 1
    assert getattr(summary, "n_problems", None) == 7


def _try_to_write(folder: Path, outcome: Connection) -> None:
    try:
        with folder_lock(folder):
            outcome.send("wrote")
    except RunFolderError as error:
        outcome.send(str(error))


def _in_another_process(folder: Path) -> str:
    # Forked, so the child starts at once with everything imported; it opens the lock file anew,
    # as a second `cot-transfer run` would.
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_try_to_write, args=(folder, sender))
    child.start()
    child.join(60)
    return str(receiver.recv())


def test_a_second_process_cannot_write_a_folder_that_is_being_written(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with folder_lock(folder):
        assert "being written by another process" in _in_another_process(folder)
    # The lock goes with its holder: once released, the other process may write.
    assert _in_another_process(folder) == "wrote"
