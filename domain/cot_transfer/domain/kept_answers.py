"""The answers a row's samples gave: counts per distinct answer, and the majority among them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
