"""Imported CoTs: parsed in their declared format, cut without calling the model, and errors
that stay with their problem. Kept answers: every sample's answer counted per row."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cot_transfer.domain import requests as rq
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.kept_answers import count_answers, majority
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.steps import CutMode, StepBoundary, step_cuts, step_ends
from cot_transfer.serving.dataplane.fanout import TransferRunner
from cot_transfer.serving.replicas.cuts import cot_step_cuts, parse_imported_cot
from cot_transfer.serving.replicas.strong_server import StrongModelServer
from tests.fakes import ScriptedEngine, transfer_request
from tests.reasoning_models import load_tokenizer, save_model_folder

SAMPLING = SamplingParams(0.6, 0.95, 100)
PLAIN_COT = "Add 1 and 2.\nThat is 3.\nAnswer: 3"


@pytest.fixture(scope="module")
def qwen3_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    return load_tokenizer(save_model_folder(Path(tmp_path_factory.mktemp("models")) / "qwen3", "qwen3"))


def test_a_think_block_cot_splits_into_reasoning_and_answer(qwen3_tokenizer: object) -> None:
    parsed = parse_imported_cot(qwen3_tokenizer, "<think>\nstep one\nstep two\n</think>\n\nAnswer: 12", "qwen3")  # type: ignore[arg-type]
    assert "step one\nstep two" in qwen3_tokenizer.decode(parsed.reasoning_ids)  # type: ignore[attr-defined]
    assert parsed.final_text == "Answer: 12" and parsed.has_reasoning_block


def test_a_cot_that_never_closes_its_block_does_not_parse(qwen3_tokenizer: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_imported_cot(qwen3_tokenizer, "<think>\nstep one, and then the text stops", "qwen3")  # type: ignore[arg-type]
    assert caught.value.field == "cot" and "never closed" in str(caught.value)


def test_an_unknown_format_names_the_format_field() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_imported_cot(ScriptedEngine([]).tokenizer, PLAIN_COT, "markdown")
    assert caught.value.field == "cot_format"


async def test_an_imported_cot_is_cut_without_calling_the_engine() -> None:
    engine = ScriptedEngine(["never generated"])
    request = rq.PrefixRequest("1+2", (0.0, 0.5, 1.0), SAMPLING, "exact", cut=CutMode.STEP, cot=PLAIN_COT)
    events = [event async for event in StrongModelServer(engine).stream_prefixes(request)]
    assert engine.requests == []
    prefixes = [event for event in events if isinstance(event, rq.Prefix)]
    assert [prefix.text for prefix in prefixes] == ["", "Add 1 and 2.\n", PLAIN_COT]
    answer = events[-1]
    assert isinstance(answer, rq.StrongAnswer)
    assert answer.imported and answer.cot == PLAIN_COT and answer.answer == "3" and answer.finish_reason == "imported"


def test_answers_are_counted_most_frequent_first_and_the_majority_ignores_no_answer() -> None:
    counts = count_answers(["3", None, "4", "3", None, None])
    assert counts == (("", 3), ("3", 2), ("4", 1))
    top = majority(counts)
    assert top is not None and top.answer == "3" and top.count == 2 and top.agreement == pytest.approx(2 / 6)
    assert majority(count_answers([None, None])) is None
    assert majority(()) is None


# The runner end to end, with the strong server over a scripted engine that must never be called.
class _Weak:
    def __init__(self) -> None:
        self.requests: list[rq.CompletionRequest] = []

    async def __call__(self, request: rq.CompletionRequest) -> rq.CompletionResult:
        self.requests.append(request)
        answers = ["3", "3", None, "5"][: request.n]
        return rq.CompletionResult(
            [
                rq.GradedCompletion(f"text {i}", answer, answer == request.reference_answer, 2, "stop")
                for i, answer in enumerate(answers)
            ],
            4,
        )


def run_request(problems: list[rq.Problem], **options: object) -> rq.TransferRequest:
    sampling = {"strong_sampling": SAMPLING, "receiver_sampling": SAMPLING}
    return transfer_request(problems, (0.0, 1.0), n=4, max_cot_chars=200, **sampling, **options)


async def test_a_run_of_imported_cots_keeps_answers_and_isolates_bad_cots() -> None:
    engine = ScriptedEngine(["never generated"])
    strong = StrongModelServer(engine)

    def stream(request: rq.PrefixRequest) -> AsyncIterator[rq.StrongEvent]:
        return strong.stream_prefixes(request)

    weak = _Weak()
    problems = [
        rq.Problem("good", "1+2", "3", cot=PLAIN_COT),
        rq.Problem("unparsable", "1+2", "3", cot="<think>\nno end", cot_format="deepseek_r1"),
        rq.Problem("long", "1+2", "3", cot="x" * 201),
    ]
    runner = TransferRunner(stream, weak, max_concurrent_completions=4)
    events = [event async for event in runner.run(run_request(problems, keep_completions=True))]
    assert engine.requests == []
    errors = {event.problem_id: event for event in events if isinstance(event, rq.ProblemError)}
    assert set(errors) == {"unparsable", "long"}
    assert errors["long"].code == "OUT_OF_RANGE" and errors["long"].permanent
    strong_cots = [event for event in events if isinstance(event, rq.StrongCot)]
    assert [cot.problem_id for cot in strong_cots] == ["good"] and strong_cots[0].imported
    rows = [event for event in events if isinstance(event, rq.FractionResult)]
    assert {row.fraction for row in rows} == {0.0, 1.0}
    for row in rows:
        assert row.answer_counts == (("3", 2), ("", 1), ("5", 1))
        assert [completion.text for completion in row.completions] == ["text 0", "text 1", "text 2", "text 3"]


async def test_completions_are_dropped_unless_kept() -> None:
    strong = StrongModelServer(ScriptedEngine([]))
    runner = TransferRunner(strong.stream_prefixes, _Weak(), max_concurrent_completions=4)
    events = [event async for event in runner.run(run_request([rq.Problem("good", "1+2", "3", cot=PLAIN_COT)]))]
    rows = [event for event in events if isinstance(event, rq.FractionResult)]
    assert rows and all(row.completions == () and sum(c for _, c in row.answer_counts) == 4 for row in rows)


def test_step_cuts_over_a_bpe_tokenizer_match_decoding_every_prefix(qwen3_tokenizer: object) -> None:
    tokenizer = qwen3_tokenizer
    text = "\n".join(f"Step {i}: 7 × 8 = 56; café → 你好. Then ∑ {i}! Done?" for i in range(40))
    ids = tokenizer.encode(text)  # type: ignore[attr-defined]
    for boundary in StepBoundary:
        exact = step_cuts(
            step_ends(tokenizer.decode(ids), boundary),  # type: ignore[attr-defined]
            len(ids),
            lambda count: len(tokenizer.decode(ids[:count])),  # type: ignore[attr-defined]
        )
        assert cot_step_cuts(tokenizer, ids, boundary) == exact  # type: ignore[arg-type]
        assert len(exact) > 40
