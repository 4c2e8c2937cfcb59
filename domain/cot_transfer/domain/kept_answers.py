"""The answers a row's samples gave: counts per distinct answer, the majority among them, and which
completions a row keeps when it keeps only a few."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cot_transfer.domain.requests import GradedCompletion

# The answer of a sample that states none.
NO_ANSWER = ""


def count_answers(answers: Iterable[str | None]) -> tuple[tuple[str, int], ...]:
    """(answer, count) per distinct extracted answer, most frequent first, ties by answer text.

    A sample that states no answer counts under ``NO_ANSWER``.
    """
    counts = Counter(NO_ANSWER if answer is None else answer for answer in answers)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class Majority:
    answer: str
    count: int
    # The majority's share of all samples: the samples' agreement.
    agreement: float


def majority(counts: Sequence[tuple[str, int]]) -> Majority | None:
    """The most frequent stated answer and its share of all samples; None when no sample states one.

    Samples without an answer count in the share's denominator but never win: a row where most
    samples state nothing still shows what the others agree on, with a low agreement.
    """
    total = sum(count for _, count in counts)
    stated = [(answer, count) for answer, count in counts if answer != NO_ANSWER]
    if not stated or total == 0:
        return None
    answer, count = min(stated, key=lambda item: (-item[1], item[0]))
    return Majority(answer=answer, count=count, agreement=count / total)


def chosen_completions(completions: Sequence[GradedCompletion], limit: int) -> list[GradedCompletion]:
    """At most ``limit`` of a row's completions, with distinct texts, in their sampled order.

    First the earliest completion of each distinct answer (the most frequent answers first, the
    samples stating none last), then the earliest of the rest. So a capped row still shows how the
    receiver reached each answer it gave, not just the majority's. A text repeated verbatim is kept
    once: it adds nothing to read, and the row's answer counts still count every sample.
    """
    answers = [completion.extracted_answer for completion in completions]
    firsts: dict[str, int] = {}
    for index, answer in enumerate(answers):
        firsts.setdefault(NO_ANSWER if answer is None else answer, index)
    by_answer = [firsts[answer] for answer, _ in sorted(count_answers(answers), key=lambda item: item[0] == NO_ANSWER)]
    chosen: list[int] = []
    texts: set[str] = set()
    for index in [*by_answer, *range(len(completions))]:
        if len(chosen) >= limit:
            break
        if index not in chosen and completions[index].text not in texts:
            chosen.append(index)
            texts.add(completions[index].text)
    return [completions[index] for index in sorted(chosen)]
