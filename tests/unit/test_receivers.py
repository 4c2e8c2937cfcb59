"""Several receivers and answer modes in one run: the fan-out, the edge, the wire, force_answer."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from cot_transfer.client.convert import transfer_event_from_proto
from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.receivers import FORCE_ANSWER, FREE, primary_key
from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    FractionResult,
    GradedCompletion,
    PrefixRequest,
    Problem,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import RunSummary
from cot_transfer.serving.common.serving_config import CustomReasoningFormat, ServingConfig
from cot_transfer.serving.dataplane.fanout import TransferRunner
from cot_transfer.serving.edge import decode, encode
from cot_transfer.serving.replicas.force_answer import PLAIN_ANSWER_CUE, closing_ids, graded_text
from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.v1 import cot_transfer_pb2 as pb
from tests.fakes import CharTokenizer, ScriptedEngine, cot_events, transfer_request

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
STRONG, WEAK = CONFIG.strong.engine.name, CONFIG.weak.engine.name
COT = "abcdefghij Answer: 1"


def stream_prefixes(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
    return cot_events(COT, request.fractions, "1")


def scripted_complete(calls: list[CompletionRequest]):  # type: ignore[no-untyped-def]
    """The strong model solves its problem from any prefix; the weak one needs half the CoT,
    and only when it continues freely (forced, it answers wrong)."""

    async def complete(request: CompletionRequest) -> CompletionResult:
        calls.append(request)
        correct = request.receiver == STRONG or (request.mode == FREE and len(request.prefix) >= 10)
        return CompletionResult([GradedCompletion("", "1" if correct else None, correct, 1, "stop")] * request.n, 3)

    return complete


def request(receivers: tuple[str, ...], modes: tuple[str, ...]) -> TransferRequest:
    primary = primary_key(receivers, modes, (WEAK,))
    return transfer_request([Problem("p1", "problem one", "1")], receivers=receivers, modes=modes, primary=primary)


async def test_every_receiver_completes_the_same_prefixes_in_every_mode() -> None:
    calls: list[CompletionRequest] = []
    runner = TransferRunner(stream_prefixes, scripted_complete(calls), max_concurrent_completions=4)
    events = [event async for event in runner.run(request((STRONG, WEAK), (FREE, FORCE_ANSWER)))]
    rows = [event for event in events if isinstance(event, FractionResult)]
    assert len(rows) == 3 * 2 * 2
    assert {(row.receiver, row.mode) for row in rows} == {(r, m) for r in (STRONG, WEAK) for m in (FREE, FORCE_ANSWER)}
    prefixes_by_receiver = {
        key: sorted(call.prefix for call in calls if (call.receiver, call.mode) == key)
        for key in {(call.receiver, call.mode) for call in calls}
    }
    assert len({tuple(prefixes) for prefixes in prefixes_by_receiver.values()}) == 1  # one set of prefixes

    summary = events[-1]
    assert isinstance(summary, RunSummary)
    blocks = {(block.receiver, block.mode): block for block in summary.receivers}
    assert set(blocks) == set(prefixes_by_receiver)
    # The strong model solves its own problem at baseline: self-potential, nothing to unlock.
    assert blocks[(STRONG, FREE)].baseline_unsolved == 0
    assert [stats.mean_potential for stats in blocks[(STRONG, FREE)].per_fraction] == [1.0, 1.0, 1.0]
    assert [stats.unlocked for stats in blocks[(WEAK, FREE)].per_fraction] == [0, 1, 1]
    assert [stats.unlocked for stats in blocks[(WEAK, FORCE_ANSWER)].per_fraction] == [0, 0, 0]
    # The top-level fields repeat the first weak receiver in free mode.
    assert summary.per_fraction == blocks[(WEAK, FREE)].per_fraction
    assert summary.baseline_unsolved == 1


async def test_a_request_without_receivers_runs_the_weak_model_freely_as_before() -> None:
    calls: list[CompletionRequest] = []
    runner = TransferRunner(stream_prefixes, scripted_complete(calls), max_concurrent_completions=4)
    old = TransferRequest(**{**vars(request((), ())), "modes": (), "primary": ("", FREE)})
    events = [event async for event in runner.run(old)]
    assert {(call.receiver, call.mode) for call in calls} == {("", FREE)}
    summary = events[-1]
    assert isinstance(summary, RunSummary)
    assert summary.receivers == ()
    assert [stats.unlocked for stats in summary.per_fraction] == [0, 1, 1]


def test_primary_is_the_first_weak_receiver_in_free_mode_else_the_first() -> None:
    assert primary_key((STRONG, WEAK), (FORCE_ANSWER, FREE), (WEAK,)) == (WEAK, FREE)
    assert primary_key((STRONG,), (FORCE_ANSWER,), (WEAK,)) == (STRONG, FORCE_ANSWER)


def run_request(**overrides: object) -> pb.RunRequest:
    fields: dict[str, object] = {
        "problems": [pb.Problem(id="a", problem="1+2", answer="3")],
        "fractions": [1.0],
        "n": 2,
    }
    fields.update(overrides)
    return pb.RunRequest(**fields)  # type: ignore[arg-type]


def test_the_edge_resolves_receivers_and_modes_with_the_weak_model_free_by_default() -> None:
    plain = decode.transfer_request_from_proto(run_request(), CONFIG)
    assert (plain.receivers, plain.modes, plain.primary) == ((WEAK,), (FREE,), (WEAK, FREE))
    both = decode.transfer_request_from_proto(
        run_request(receivers=[STRONG, WEAK, STRONG], modes=[pb.ANSWER_MODE_FORCE_ANSWER, pb.ANSWER_MODE_FREE]),
        CONFIG,
    )
    assert both.receivers == (STRONG, WEAK)
    assert both.modes == (FORCE_ANSWER, FREE)
    assert both.primary == (WEAK, FREE)


def test_an_unknown_receiver_is_not_found_naming_what_is_served() -> None:
    with pytest.raises(NotFoundError, match=r"receivers\[1\].*'nope'.*testbed-weak"):
        decode.transfer_request_from_proto(run_request(receivers=[WEAK, "nope"]), CONFIG)
    with pytest.raises(NotFoundError, match="receiver"):
        decode.completion_request_from_proto(
            pb.CompleteRequest(problem="1+2", n=1, reference_answer="3", receiver="nope"), CONFIG
        )


def test_a_bad_mode_is_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode.transfer_request_from_proto(run_request(modes=[pb.ANSWER_MODE_FREE, 7]), CONFIG)
    assert caught.value.field == "modes[1]"
    with pytest.raises(InvalidArgumentError) as single:
        # An enum value from a newer client that this service does not know.
        unknown = cast(pb.AnswerMode, 9)
        decode.completion_request_from_proto(
            pb.CompleteRequest(problem="1+2", n=1, reference_answer="3", mode=unknown), CONFIG
        )
    assert single.value.field == "mode"


def test_results_and_receiver_blocks_cross_the_wire() -> None:
    row = FractionResult("a", 0.5, 3, 6, 2, 1, receiver=STRONG, mode=FORCE_ANSWER)
    assert transfer_event_from_proto(encode.transfer_event_to_proto(row)) == row
    legacy = transfer_event_from_proto(pb.RunResponse(result=pb.FractionResult(problem_id="a", n=1)))
    assert isinstance(legacy, FractionResult)
    assert (legacy.receiver, legacy.mode) == ("", FREE)


async def test_the_wire_summary_carries_one_block_per_receiver_and_mode() -> None:
    runner = TransferRunner(stream_prefixes, scripted_complete([]), max_concurrent_completions=4)
    events = [event async for event in runner.run(request((STRONG, WEAK), (FREE, FORCE_ANSWER)))]
    summary = events[-1]
    assert isinstance(summary, RunSummary)
    back = transfer_event_from_proto(encode.transfer_event_to_proto(summary))
    assert isinstance(back, RunSummary)
    assert [(block.receiver, block.mode) for block in back.receivers] == [
        (block.receiver, block.mode) for block in summary.receivers
    ]
    assert [[stats.unlocked for stats in block.per_fraction] for block in back.receivers] == [
        [stats.unlocked for stats in block.per_fraction] for block in summary.receivers
    ]


def completion(mode: str, prefix: str = "abc") -> CompletionRequest:
    return CompletionRequest(
        problem="1+2",
        prefix=prefix,
        n=2,
        sampling=SamplingParams(0.6, 0.95, 40),
        reference_answer="3",
        grader="exact",
        mode=mode,
    )


async def test_force_answer_closes_the_prefix_and_answers_with_its_own_short_budget() -> None:
    engine = ScriptedEngine([" 3\nmore reasoning that the budget cuts off"])
    server = ReceiverServer(engine, force_answer_max_tokens=4)
    result = await server.complete(completion(FORCE_ANSWER))
    sent = engine.requests[-1]
    prompt = engine.tokenizer.decode(sent.prompt_token_ids)
    assert prompt.endswith("abc" + PLAIN_ANSWER_CUE)
    assert sent.sampling.max_tokens == 4
    # The completion continues the answer cue, so " 3" grades as the answer line "Answer: 3".
    assert [c.extracted_answer for c in result.completions] == ["3", "3"]
    assert result.num_correct == 2


async def test_free_mode_continues_the_reasoning_with_the_reasoning_budget() -> None:
    engine = ScriptedEngine([" 3"])
    server = ReceiverServer(engine, force_answer_max_tokens=4)
    result = await server.complete(completion(FREE))
    sent = engine.requests[-1]
    assert engine.tokenizer.decode(sent.prompt_token_ids).endswith("abc")
    assert sent.sampling.max_tokens == 40 - 3
    assert result.num_correct == 0  # " 3" states no answer line of its own


def config_with_a_receiver(name: str) -> ServingConfig:
    data = CONFIG.model_dump(mode="json")
    data["receivers"] = [{**data["weak"], "engine": {**data["weak"]["engine"], "served_name": name}}]
    return ServingConfig.model_validate(data)


def test_a_configured_receiver_only_model_is_served_listed_with_its_role_and_named_in_runs() -> None:
    config = config_with_a_receiver("third")
    info = encode.service_info_to_proto(config)
    assert {model.name: list(model.roles) for model in info.models} == {
        STRONG: ["strong"],
        WEAK: ["weak"],
        "third": ["receiver"],
    }
    run = decode.transfer_request_from_proto(run_request(receivers=["third", STRONG]), config)
    assert run.receivers == ("third", STRONG)
    # No weak receiver asked: the first receiver stands for the run at top level.
    assert run.primary == ("third", FREE)
    with pytest.raises(NotFoundError):
        decode.transfer_request_from_proto(run_request(receivers=["third"]), CONFIG)


def test_a_receiver_may_not_reuse_a_served_name() -> None:
    with pytest.raises(ValueError, match=r"receivers\[0\].*already in use"):
        config_with_a_receiver(WEAK)


def test_force_answer_closes_a_think_block_with_the_formats_end_marker() -> None:
    custom = resolve_format(
        CustomReasoningFormat(
            template="{prompt}<think>\n{reasoning}", reasoning_start="<think>", reasoning_end="</think>"
        )
    )
    tokenizer = CharTokenizer()
    codec = ReasoningCodec(custom, tokenizer)
    assert tokenizer.decode(closing_ids(codec, tokenizer)) == "\n</think>\n\n"
    # Past the closed block the completion is the final answer itself.
    assert graded_text(codec, "Answer: 3") == "Answer: 3"
    plain = ReasoningCodec(resolve_format("plain"), tokenizer)
    assert tokenizer.decode(closing_ids(plain, tokenizer)) == PLAIN_ANSWER_CUE
    assert graded_text(plain, " 3") == PLAIN_ANSWER_CUE + " 3"
