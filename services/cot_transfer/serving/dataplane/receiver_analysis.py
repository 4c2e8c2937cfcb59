"""The receiver and answer-mode fan-out of a transfer run, and its analysis per (receiver, mode).

Every prefix of a run goes to every receiver in every mode, so all of them see the same CoTs
and the same prefixes. Each (receiver, mode) is analysed on its own with the one analysis
(``cot_transfer.domain.analysis``); the summary's top-level fields repeat the primary one
(``TransferRequest.primary``) and the per-(receiver, mode) blocks sit beside them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cot_transfer.domain.analysis import RunningAnalysis
from cot_transfer.domain.receivers import (
    FREE,
    ReceiverMode,
    receiver_modes,
)
from cot_transfer.domain.requests import CompletionRequest, FractionResult, Prefix, Problem, TransferRequest
from cot_transfer.domain.transfer import ReceiverSummary, RunSummary


def run_receiver_modes(request: TransferRequest) -> tuple[ReceiverMode, ...]:
    """The run's (receiver, mode) pairs; a request naming none is the weak model in free mode."""
    return receiver_modes(request.receivers or ("",), request.modes or (FREE,))


def completion_request(
    request: TransferRequest, problem: Problem, prefix: Prefix, receiver: str, mode: str
) -> CompletionRequest:
    # In the field order: problem, prefix, n, sampling, reference answer, grader.
    fields = (problem.problem, prefix.text, request.n, request.receiver_sampling, problem.answer, request.grader)
    return CompletionRequest(*fields, prefix_token_ids=prefix.token_ids, receiver=receiver, mode=mode)


class ReceiverAnalyses:
    """One running analysis per (receiver, mode) of a run; the gauges follow the primary one."""

    def __init__(self, request: TransferRequest) -> None:
        self._keys = run_receiver_modes(request)
        primary = request.primary if request.primary in self._keys else self._keys[0]
        self._primary: ReceiverMode = primary
        self._analyses = {key: RunningAnalysis(request.thresholds, request.fractions) for key in self._keys}
        self._rows = 0

    @property
    def rows(self) -> int:
        """Results added so far, over every (receiver, mode)."""
        return self._rows

    def add(self, result: FractionResult) -> None:
        self._analyses[(result.receiver, result.mode)].add(result)
        self._rows += 1

    def exclude(self, problem_id: str, reason: str) -> None:
        for analysis in self._analyses.values():
            analysis.exclude(problem_id, reason)

    def unlock_rates_due(self, *, force: bool = False) -> dict[float, float] | None:
        return self._analyses[self._primary].unlock_rates_due(force=force)

    def run_summary(self, n_samples: int, strong_correct: Mapping[str, bool]) -> RunSummary:
        blocks = []
        for receiver, mode in self._keys:
            analysis = self._analyses[(receiver, mode)].analysis(strong_correct=strong_correct)
            blocks.append(ReceiverSummary(receiver, mode, analysis.baseline_unsolved, analysis.per_fraction))
        summary = self._analyses[self._primary].analysis(strong_correct=strong_correct).run_summary(n_samples)
        if len(self._keys) == 1 and not self._keys[0][0]:
            return summary  # a request from before receivers: today's summary, nothing beside it
        return dataclasses.replace(summary, receivers=tuple(blocks))
