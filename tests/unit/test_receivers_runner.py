"""A run of several receivers and modes end to end without Ray: the real client, runner, results
folder and report against an in-process gRPC server built from the service's edge, TransferRunner
and model servers over the scripted engine; and the resume of such a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from cot_transfer.client import CotTransferClient
from cot_transfer.domain.receivers import FORCE_ANSWER, FREE
from cot_transfer.domain.requests import CompletionRequest, CompletionResult, Problem
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
STRONG, WEAK = CONFIG.strong.engine.name, CONFIG.weak.engine.name
KEYS = {(receiver, mode) for receiver in (STRONG, WEAK) for mode in (FREE, FORCE_ANSWER)}


class TwoReceiverService(pb_grpc.TransferServicer, pb_grpc.WeakModelServicer):
    """The ingress minus Ray: the strong engine writes CoTs and completes as a receiver (it
    always answers 3, freely or forced); the weak one answers 4 when forced."""

    def __init__(self) -> None:
        strong_engine = ScriptedEngine([" so 3. Answer: 3"], max_model_len=512)
        weak_engine = ScriptedEngine([" 4\nAnswer: 3"], max_model_len=512)
        self.strong = StrongModelServer(strong_engine)
        self.receivers = {
            STRONG: WeakModelServer(strong_engine, STRONG),
            WEAK: WeakModelServer(weak_engine, WEAK, force_answer_max_tokens=2),
        }
        self.runner = TransferRunner(self.strong.stream_prefixes, self.complete, max_concurrent_completions=8)
        self.completes: list[tuple[str, str]] = []

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        return await self.receivers[request.receiver or WEAK].complete(request)

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.GetInfoResponse:  # noqa: N802
        return encode.service_info_to_proto(CONFIG, {STRONG: "f-strong", WEAK: "f-weak"})

    async def Run(  # noqa: N802
        self, request: pb.RunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunResponse]:
        async for event in self.runner.run(decode.transfer_request_from_proto(request, CONFIG)):
            yield encode.transfer_event_to_proto(event)

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:  # noqa: N802
        completion = decode.completion_request_from_proto(request, CONFIG)
        self.completes.append((completion.receiver, completion.mode))
        return encode.completion_result_to_proto(await self.complete(completion))


@pytest.fixture
async def service() -> AsyncIterator[tuple[TwoReceiverService, str]]:
    servicer = TwoReceiverService()
    server = grpc.aio.server()
    pb_grpc.add_TransferServicer_to_server(servicer, server)
    pb_grpc.add_WeakModelServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


PROBLEMS = [Problem("p1", "1+2", "3"), Problem("p2", "2+1", "3")]
SETTINGS = ExperimentSettings(fractions=(0.5, 1.0), n=2, receivers=(STRONG, WEAK), modes=(FREE, FORCE_ANSWER))


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


async def test_a_run_keys_rows_by_receiver_and_mode_and_reports_them_side_by_side(
    service: tuple[TwoReceiverService, str], tmp_path: Path
) -> None:
    _, address = service
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out)
    written = rows(out)
    assert len(written) == len(PROBLEMS) * 3 * len(KEYS)
    assert {(row["receiver"], row["mode"]) for row in written} == KEYS

    blocks = summary["receivers"]
    assert set(blocks) == {STRONG, WEAK} and all(set(modes) == {FREE, FORCE_ANSWER} for modes in blocks.values())
    assert blocks[STRONG][FREE]["measures"] == "self-potential"
    assert blocks[WEAK][FREE]["measures"] == "transfer"
    # Forced to answer at once with 2 tokens, the weak model says 4: never right.
    assert blocks[WEAK][FORCE_ANSWER]["weak_potential_mean"] == [0.0, 0.0, 0.0]
    assert blocks[STRONG][FREE]["weak_potential_mean"] == [1.0, 1.0, 1.0]
    # Today's top-level keys stay, for the first weak receiver in free mode.
    assert blocks[WEAK][FREE]["primary"] is True
    assert summary["weak_potential_mean"] == blocks[WEAK][FREE]["weak_potential_mean"]
    assert summary["unlock_rate"] == blocks[WEAK][FREE]["unlock_rate"]
    report = (out / "report.md").read_text()
    assert "## Receivers side by side" in report
    assert f"{STRONG} (self-potential, force_answer)" in report and f"{WEAK} (transfer, free)" in report
    assert (out / "receivers.png").stat().st_size > 0


async def test_a_resume_redoes_only_the_missing_receiver_rows_on_the_stored_prefixes(
    service: tuple[TwoReceiverService, str], tmp_path: Path
) -> None:
    servicer, address = service
    out = tmp_path / "run"
    async with CotTransferClient(address) as client:
        await run_experiment(client, PROBLEMS, SETTINGS, out)
        complete = rows(out)
        lost = [
            row
            for row in complete
            if row["problem_id"] == "p1" and (row["receiver"], row["mode"]) in {(STRONG, FORCE_ANSWER), (WEAK, FREE)}
        ]
        lost = [row for row in lost if row["fraction"] != 0.0 or row["receiver"] == STRONG]
        kept = [row for row in complete if row not in lost]
        (out / "results.jsonl").write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))
        summary = await run_experiment(client, PROBLEMS, SETTINGS, out, resume=True)
    assert sorted(servicer.completes) == sorted((row["receiver"], row["mode"]) for row in lost)
    again = rows(out)
    assert len(again) == len(complete)
    redone = again[len(kept) :]
    assert {(row["problem_id"], row["fraction"], row["receiver"], row["mode"]) for row in redone} == {
        (row["problem_id"], row["fraction"], row["receiver"], row["mode"]) for row in lost
    }
    assert summary["receivers"][WEAK][FREE]["n_problems"] == len(PROBLEMS)
