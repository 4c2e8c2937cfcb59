"""Step boundaries of a reasoning text, and cuts that snap to them.

The boundary rule (``line`` or ``sentence``):

- ``line``: a step ends after a run of line breaks ("\\n", "\\r\\n"), so the next step starts at
  the beginning of its line. A tokenizer keeps line breaks apart from the next line's first word,
  so the receiver starts the next line itself.
- ``sentence``: a step also ends after a sentence's closing punctuation (``.``, ``!``, ``?``, or an
  ellipsis, with any closing quotes or brackets after it) that is followed by whitespace. The cut
  falls before that whitespace: a tokenizer attaches a word's leading space to the word, so the
  receiver writes " The" as it would have. Decimal points ("3.5") and dots inside words
  ("e.g.x") are followed by no whitespace and end nothing; "e.g. " does end a step, as the rule
  is textual.
- Either way a step must hold some non-whitespace text (a blank line adds no step), and the end of
  the text closes the last step, so the full CoT is always the last cut.

Cuts are made on token boundaries: a step end that falls inside a token snaps down to the last
token that ends at or before it. Pure logic: the caller hands in how many characters the first
``k`` tokens decode to.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cot_transfer.domain.errors import InvalidArgumentError


class StepBoundary(enum.Enum):
    LINE = "line"
    SENTENCE = "sentence"


class CutMode(enum.Enum):
    # floor(fraction * L) tokens.
    TOKEN = "token"
    # Each fraction snaps down to the nearest step boundary.
    STEP = "step"
    # One prefix per step boundary; the fractions are not used.
    EVERY_STEP = "every_step"
    # One prefix per step boundary, rows drawn only where the cut-point search probes
    # (``cot_transfer.domain.cut_search``); the fractions are not used.
    SEARCH = "search"

    @property
    def cuts_every_step(self) -> bool:
        """The CoT is cut after every step (the prefixes of an every-step run)."""
        return self in (CutMode.EVERY_STEP, CutMode.SEARCH)


# The summary fractions of an every-step run: its rows sit at each step's own share of the CoT,
# so only the baseline and the whole CoT (the last step) are shared by every problem.
EVERY_STEP_FRACTIONS = (0.0, 1.0)


def parse_step_boundary(value: str, field: str = "step_boundary") -> StepBoundary:
    try:
        return StepBoundary(value)
    except ValueError:
        raise InvalidArgumentError(field, f"must be one of line, sentence; got {value!r}") from None


def parse_cut_mode(value: str, field: str = "cut") -> CutMode:
    try:
        return CutMode(value)
    except ValueError:
        raise InvalidArgumentError(
            field, f"must be one of {', '.join(mode.value for mode in CutMode)}; got {value!r}"
        ) from None


_LINE_END = re.compile(r"(?:\r?\n)+")
_SENTENCE_END = re.compile(r"(?:\.\.\.|…|[.!?])+[\"'”’)\]]*(?=\s)")


def step_ends(text: str, boundary: StepBoundary) -> list[int]:
    """Character offsets where the steps of ``text`` end, increasing; the last is ``len(text)``.

    Empty text has no steps.
    """
    candidates = {match.end() for match in _LINE_END.finditer(text)}
    if boundary is StepBoundary.SENTENCE:
        candidates.update(match.end() for match in _SENTENCE_END.finditer(text))
    candidates.add(len(text))
    ends: list[int] = []
    start = 0
    for end in sorted(candidates):
        if text[start:end].strip():
            ends.append(end)
            start = end
    if ends and ends[-1] != len(text):
        # Trailing whitespace after the last step belongs to it: the full text is the last cut.
        ends[-1] = len(text)
    return ends


@dataclass(frozen=True)
class StepCut:
    """A cut after ``num_steps`` complete steps, ``num_tokens`` tokens into the CoT."""

    num_tokens: int
    num_steps: int


def step_cuts(ends: Sequence[int], total_tokens: int, chars_of: Callable[[int], int]) -> list[StepCut]:
    """The token cut of every step end, the empty cut (0 steps) first.

    ``chars_of(k)``: the length of the first ``k`` tokens' text, non-decreasing in ``k``. A step
    end inside a token snaps down to the last token boundary at or before it; two step ends that
    snap to the same token give one cut (the one with more steps), so cuts are strictly increasing.
    The last step end is the whole text: its cut is all ``total_tokens`` tokens.
    """
    cuts = [StepCut(0, 0)]
    low = 0
    for index, end in enumerate(ends, start=1):
        last = index == len(ends)
        tokens = total_tokens if last else _last_token_at_or_before(end, low, total_tokens, chars_of)
        if tokens == cuts[-1].num_tokens:
            if tokens > 0:
                cuts[-1] = StepCut(tokens, index)
            continue
        cuts.append(StepCut(tokens, index))
        low = tokens
    return cuts


def _last_token_at_or_before(end: int, low: int, high: int, chars_of: Callable[[int], int]) -> int:
    """The largest k in [low, high] with chars_of(k) <= end (low when none is).

    Galloping from ``low``: a step is short next to the CoT, so the probes stay near the last cut
    and ``chars_of`` never decodes far past it.
    """
    step = 1
    while low + step <= high and chars_of(low + step) <= end:
        low, step = low + step, step * 2
    high = min(high, low + step - 1)
    while low < high:
        middle = (low + high + 1) // 2
        if chars_of(middle) <= end:
            low = middle
        else:
            high = middle - 1
    return low


def snap_down(target_tokens: int, cuts: Sequence[StepCut]) -> StepCut:
    """The last cut at or before ``target_tokens`` (``cuts`` increasing, starting at 0 tokens)."""
    chosen = cuts[0]
    for cut in cuts:
        if cut.num_tokens > target_tokens:
            break
        chosen = cut
    return chosen
