"""The strong and weak data planes over a scripted engine: cutting, budgets, grading, aborts."""

import asyncio

import pytest

from cot_transfer.domain.errors import NotFoundError, OutOfRangeError
from cot_transfer.domain.requests import CompletionRequest, CotDelta, Prefix, PrefixRequest, StrongAnswer
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.replicas.receiver_server import ReceiverServer
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.fakes import ScriptedEngine

COT = "1+2=3; 3*3=9. Answer: 9"


async def collect(server: StrongModelServer, request: PrefixRequest) -> list[object]:
    return [event async for event in server.stream_prefixes(request)]


def prefix_request(fractions: tuple[float, ...], max_tokens: int = 100, grader: str = "exact") -> PrefixRequest:
    return PrefixRequest("1+2*3", fractions, SamplingParams(0.6, 0.95, max_tokens), grader)


async def test_strong_streams_deltas_then_prefixes_in_request_order_then_answer() -> None:
    events = await collect(StrongModelServer(ScriptedEngine([COT])), prefix_request((0.5, 0.0, 1.0)))
    deltas = [event for event in events if isinstance(event, CotDelta)]
    prefixes = [event for event in events if isinstance(event, Prefix)]
    assert "".join(delta.text for delta in deltas) == COT
    assert [prefix.fraction for prefix in prefixes] == [0.5, 0.0, 1.0]
    assert events.index(prefixes[0]) > events.index(deltas[-1])
    length = len(COT)  # one token per character; the end-of-sequence token is not counted
    assert [prefix.num_tokens for prefix in prefixes] == [length // 2, 0, length]
    assert all(prefix.cot_num_tokens == length for prefix in prefixes)
    assert prefixes[0].text == COT[: length // 2]
    assert prefixes[2].text == COT
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.answer == "9" and answer.cot == COT and answer.finish_reason == "stop"


async def test_strong_reports_length_when_the_budget_ends_the_cot() -> None:
    events = await collect(StrongModelServer(ScriptedEngine([COT])), prefix_request((1.0,), max_tokens=5))
    answer = events[-1]
    assert isinstance(answer, StrongAnswer)
    assert answer.finish_reason == "length" and answer.cot == COT[:5] and answer.cot_num_tokens == 5


async def test_strong_rejects_a_budget_past_the_context() -> None:
    engine = ScriptedEngine([COT], max_model_len=50)
    with pytest.raises(OutOfRangeError) as caught:
        await collect(StrongModelServer(engine), prefix_request((1.0,), max_tokens=45))
    assert caught.value.field == "sampling.max_tokens"
    assert engine.requests == []


async def test_strong_unknown_grader_fails_before_generating() -> None:
    engine = ScriptedEngine([COT])
    with pytest.raises(NotFoundError):
        await collect(StrongModelServer(engine), prefix_request((1.0,), grader="nope"))
    assert engine.requests == []


async def test_strong_aborts_the_engine_request_when_the_consumer_goes_away() -> None:
    engine = ScriptedEngine([COT], delay_s=0.01)
    stream = StrongModelServer(engine).stream_prefixes(prefix_request((1.0,)))
    await anext(stream)
    await stream.aclose()
    assert len(engine.aborted) == 1


def completion_request(prefix: str, n: int = 3, max_tokens: int = 40) -> CompletionRequest:
    return CompletionRequest("1+2*3", prefix, n, SamplingParams(0.6, 0.95, max_tokens), "9", "exact")


async def test_weak_prompt_is_rendered_problem_then_prefix_and_budget_counts_the_prefix() -> None:
    engine = ScriptedEngine([" 3*3=9. Answer: 9", " 3*3=6. Answer: 6"])
    result = await ReceiverServer(engine).complete(completion_request("1+2=3;", n=4))
    (request,) = engine.requests
    tokenizer = engine.tokenizer
    assert tokenizer.decode(request.prompt_token_ids) == "Q: 1+2*3\nA: 1+2=3;"
    assert request.n == 4
    assert request.sampling.max_tokens == 40 - len("1+2=3;")
    assert [completion.correct for completion in result.completions] == [True, False, True, False]
    assert [completion.extracted_answer for completion in result.completions] == ["9", "6", "9", "6"]
    assert result.num_correct == 2 and result.potential == 0.5
    assert result.prompt_num_tokens == len("Q: 1+2*3\nA: 1+2=3;")


async def test_weak_grades_its_completion_not_the_received_prefix() -> None:
    # The prefix states the answer; a completion that adds none is not credited with it.
    engine = ScriptedEngine([""])
    result = await ReceiverServer(engine).complete(completion_request(COT, n=2))
    assert result.potential == 0.0


async def test_weak_keeps_one_token_when_the_prefix_used_the_whole_budget() -> None:
    engine = ScriptedEngine(["x"])
    await ReceiverServer(engine).complete(completion_request(COT, max_tokens=len(COT)))
    assert engine.requests[0].sampling.max_tokens == 1


async def test_weak_rejects_prompt_past_the_context_naming_the_prefix() -> None:
    engine = ScriptedEngine(["x"], max_model_len=30)
    with pytest.raises(OutOfRangeError) as caught:
        await ReceiverServer(engine).complete(completion_request(COT * 2, max_tokens=500))
    assert caught.value.field == "prefix"


async def test_weak_aborts_the_engine_request_when_cancelled() -> None:
    engine = ScriptedEngine(["x"], delay_s=5)
    task = asyncio.create_task(ReceiverServer(engine).complete(completion_request("")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(engine.aborted) == 1
