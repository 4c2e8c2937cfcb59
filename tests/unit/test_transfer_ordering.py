"""The order TransferRunner sends a problem's weak requests in: longest prefix first."""

from collections.abc import AsyncIterator

from cot_transfer.domain.requests import (
    CompletionRequest,
    CompletionResult,
    CotDelta,
    CotPrefix,
    FractionRecord,
    GradedCompletion,
    PrefixRequest,
    ProblemSpec,
    StrongAnswer,
    StrongCotRecord,
    StrongEvent,
    TransferRequest,
)
from cot_transfer.domain.sampling import SamplingSettings
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.serving.transfer import TransferRunner, longest_first

COT = "0123456789abcdefghij"
FRACTIONS = (0.0, 0.1, 0.5, 0.9, 1.0)


def prefix(fraction: float, kept: int) -> CotPrefix:
    return CotPrefix(fraction, COT[:kept], kept, len(COT))


async def stream_prefixes(request: PrefixRequest) -> AsyncIterator[StrongEvent]:
    yield CotDelta(COT)
    for fraction in request.fractions:
        kept = int(fraction * len(COT))
        yield CotPrefix(fraction, f"{request.problem}:{COT[:kept]}", kept, len(COT))
    yield StrongAnswer(COT, "1", len(COT), "stop")


def transfer_request(problems: int) -> TransferRequest:
    return TransferRequest(
        problems=[ProblemSpec(f"p{index}", f"problem {index}", "1") for index in range(problems)],
        fractions=FRACTIONS,
        n=2,
        strong_sampling=SamplingSettings(0.6, 0.95, 50),
        weak_sampling=SamplingSettings(0.6, 0.95, 50),
        thresholds=Thresholds(),
        grader="exact",
    )


class RecordingWeakModel:
    def __init__(self) -> None:
        self.prefixes: list[str] = []

    async def __call__(self, request: CompletionRequest) -> CompletionResult:
        self.prefixes.append(request.prefix)
        return CompletionResult([GradedCompletion("", "1", True, 1, "stop")] * request.n, 5)


def test_longest_first_orders_by_prefix_length_descending() -> None:
    prefixes = [prefix(0.0, 0), prefix(0.5, 10), prefix(1.0, 20), prefix(0.2, 4)]
    assert [p.fraction for p in longest_first(prefixes)] == [1.0, 0.5, 0.2, 0.0]


def test_longest_first_keeps_request_order_on_ties() -> None:
    # Short CoTs map neighbouring fractions to the same token count.
    prefixes = [prefix(0.0, 0), prefix(0.1, 0), prefix(0.9, 3), prefix(1.0, 3)]
    assert [p.fraction for p in longest_first(prefixes)] == [0.9, 1.0, 0.0, 0.1]


def test_longest_first_does_not_modify_its_input() -> None:
    prefixes = [prefix(0.0, 0), prefix(1.0, 20)]
    longest_first(prefixes)
    assert [p.fraction for p in prefixes] == [0.0, 1.0]


async def test_a_problems_weak_requests_go_out_longest_prefix_first() -> None:
    weak = RecordingWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=1)
    events = [event async for event in runner.run(transfer_request(problems=1))]
    lengths = [len(text.split(":", 1)[1]) for text in weak.prefixes]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] == len(COT)
    rows = [event for event in events if isinstance(event, FractionRecord)]
    assert sorted(row.fraction for row in rows) == list(FRACTIONS)


async def test_with_many_problems_each_problem_starts_with_its_longest_prefix() -> None:
    weak = RecordingWeakModel()
    runner = TransferRunner(stream_prefixes, weak, max_concurrent_completions=64)
    [event async for event in runner.run(transfer_request(problems=3))]
    by_problem: dict[str, list[int]] = {}
    for text in weak.prefixes:
        problem, cut = text.split(":", 1)
        by_problem.setdefault(problem, []).append(len(cut))
    assert len(by_problem) == 3
    for lengths in by_problem.values():
        assert lengths == sorted(lengths, reverse=True)


async def test_strong_record_keeps_prefixes_in_request_order() -> None:
    runner = TransferRunner(stream_prefixes, RecordingWeakModel(), max_concurrent_completions=4)
    events = [event async for event in runner.run(transfer_request(problems=1))]
    [record] = [event for event in events if isinstance(event, StrongCotRecord)]
    assert [p.fraction for p in record.prefixes] == list(FRACTIONS)
