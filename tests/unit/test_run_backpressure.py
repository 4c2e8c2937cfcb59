"""A Transfer.Run's events toward a slow reader: bounded, and a reader that leaves never hangs the run."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from cot_transfer.domain import requests as rq
from cot_transfer.serving.common.serving_config import LimitsConfig
from cot_transfer.serving.dataplane.fanout import TransferRunner
from tests.fakes import cot_events, transfer_request

BOUND = 2
FRACTIONS = (0.0, 0.5, 1.0)
PROBLEMS = [rq.Problem(f"p{index}", f"problem {index}", "1") for index in range(6)]


class _MeasuredQueue(asyncio.Queue[object]):
    """asyncio.Queue that records the most items it ever held."""

    peak = 0

    def put_nowait(self, item: object) -> None:
        super().put_nowait(item)
        _MeasuredQueue.peak = max(_MeasuredQueue.peak, self.qsize())


def stream_prefixes(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
    return cot_events("abcdefghij Answer: 1", request.fractions, "1")


async def complete(request: rq.CompletionRequest) -> rq.CompletionResult:
    return rq.CompletionResult([rq.GradedCompletion("", "1", True, 1, "stop")] * request.n, 5)


def runner() -> TransferRunner:
    return TransferRunner(
        stream_prefixes, complete, max_concurrent_completions=8, limits=LimitsConfig(max_buffered_events_per_run=BOUND)
    )


@pytest.fixture
def measured_queue(monkeypatch: pytest.MonkeyPatch) -> type[_MeasuredQueue]:
    _MeasuredQueue.peak = 0
    monkeypatch.setattr(asyncio, "Queue", _MeasuredQueue)
    return _MeasuredQueue


async def test_a_slow_reader_holds_the_queue_at_its_bound_and_gets_every_row_once(
    measured_queue: type[_MeasuredQueue],
) -> None:
    rows: Counter[tuple[str, float]] = Counter()
    events = 0
    async for event in runner().run(transfer_request(PROBLEMS, FRACTIONS)):
        events += 1
        if isinstance(event, rq.FractionResult):
            rows[(event.problem_id, event.fraction)] += 1
        await asyncio.sleep(0.002)  # slower than the models: the problems wait on the reader
    assert rows == Counter({(problem.id, fraction): 1 for problem in PROBLEMS for fraction in FRACTIONS})
    assert events == len(PROBLEMS) * (1 + len(FRACTIONS)) + 1  # each CoT, each row, the summary
    assert 1 <= measured_queue.peak <= BOUND


async def test_a_reader_that_leaves_with_the_queue_full_ends_the_run_at_once() -> None:
    stream = runner().run(transfer_request(PROBLEMS, FRACTIONS))
    first = await anext(stream)
    assert isinstance(first, rq.StrongCot)
    await asyncio.sleep(0.05)  # every problem now waits on the full queue
    await asyncio.wait_for(stream.aclose(), timeout=5)
