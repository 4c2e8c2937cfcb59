"""The round driver of adaptive sampling: one (problem, fraction) drawn round by round.

The stopping rule is ``cot_transfer.domain.sequential``. Here each row draws its rounds through
the runner's ``draw`` (which takes a completion slot per round, so rounds of other rows
interleave), and the rows of one problem share its baseline: a row above fraction 0 waits for
the baseline's round r before it draws its round r + 1, so a problem solved at baseline stops
every row after the round in which that is seen.

Prefix cache: every round of a row is the same ``CompletionRequest`` but for ``n`` (and the seed),
so it renders to the same prompt tokens; vLLM's automatic prefix caching (the engine config's
``enable_prefix_caching``, on by default) hashes full blocks by their token content, so a later round
finds the prompt's blocks cached by the earlier one unless memory pressure evicted them, and
the prefixes of one problem (prompts that are prefixes of one another) share theirs too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cot_transfer.domain.requests import CompletionRequest, CompletionResult, TransferRequest
from cot_transfer.domain.run_size import row_samples_at_most
from cot_transfer.domain.sequential import N_MAX, SamplingPlan, StoppingRule
from cot_transfer.domain.sequential_estimates import rao_blackwell_potential
from cot_transfer.domain.transfer import RunSummary

Draw = Callable[[CompletionRequest], Awaitable[CompletionResult]]

# vLLM seeds sample j of an n-sample request with seed + j (parallel sampling's child seeds), so
# a round that starts at sample ``drawn`` with seed + drawn continues the stream of one seeded
# brute-force request: a seeded adaptive row draws the first samples of the brute-force row, and
# never the same sample twice.
_SEED_MODULUS = 2**31


@dataclass(frozen=True)
class Drawn:
    """A row's samples over all its rounds."""

    result: CompletionResult
    rounds: int
    stop_reason: str
    # The row's potential, unbiased under its early stop (FractionResult.rao_blackwell_potential);
    # None for a row drawn in one go.
    rao_blackwell_potential: float | None = None


class _Baseline:
    """The fraction-0 row of one (problem, receiver, mode) as its other rows see it."""

    def __init__(self) -> None:
        self.state = 0  # StoppingRule.baseline_side so far: +1 solved, -1 unsolved, 0 open
        self.rounds_done = 0
        self.finished = False
        self.changed = asyncio.Condition()

    async def update(self, state: int, finished: bool) -> None:
        async with self.changed:
            self.state = state
            self.rounds_done += 1
            self.finished = finished
            self.changed.notify_all()

    async def after_round(self, round_index: int) -> int:
        """The baseline state once it has drawn ``round_index`` rounds (or stopped before)."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.finished or self.rounds_done >= round_index)
            return self.state


def _round_request(request: CompletionRequest, size: int, drawn: int) -> CompletionRequest:
    """The round of ``size`` samples after ``drawn`` have been asked for."""
    sampling = request.sampling
    if sampling.seed is not None:
        sampling = dataclasses.replace(sampling, seed=(sampling.seed + drawn) % _SEED_MODULUS)
    return dataclasses.replace(request, n=size, sampling=sampling)


class ProblemRounds:
    """The adaptive rows of one problem: built per problem, shared by its fraction tasks."""

    def __init__(self, request: TransferRequest, fractions: Sequence[float]) -> None:
        if request.sampling_plan is None:
            raise ValueError("ProblemRounds needs a run with a sampling plan")
        self._rule = StoppingRule(request.sampling_plan, request.thresholds)
        # Without a fraction-0 row (none cut) no row can wait on one.
        self._has_baseline = any(fraction == 0.0 for fraction in fractions)
        self._baselines: dict[tuple[str, str], _Baseline] = {}

    def _baseline(self, key: tuple[str, str]) -> _Baseline:
        return self._baselines.setdefault(key, _Baseline())

    async def draw(self, request: CompletionRequest, fraction: float, key: tuple[str, str], draw: Draw) -> Drawn:
        """Draws ``request``'s row in rounds until the stopping rule stops it; ``key`` is the row's
        (receiver, mode), whose baseline it follows."""
        plan = self._rule.plan
        is_baseline = fraction == 0.0
        baseline = self._baseline(key)
        results: list[CompletionResult] = []
        successes = trials = 0
        reason: str | None = None
        asked = 0
        looks: list[int] = []  # samples drawn after each round: where the rule looked
        try:
            for index, size in enumerate(plan.round_sizes()):
                state = 0
                if not is_baseline and self._has_baseline and index > 0:
                    state = await baseline.after_round(index)
                    reason = self._rule.stop_reason(False, successes, trials, state)
                    if reason is not None:
                        break
                result = await draw(_round_request(request, size, asked))
                asked += size
                results.append(result)
                successes += result.num_correct
                trials += len(result.completions)
                looks.append(trials)
                if is_baseline:
                    state = int(self._rule.baseline_side(successes, trials))
                    reason = self._rule.stop_reason(True, successes, trials, state)
                    await baseline.update(state, reason is not None)
                else:
                    reason = self._rule.stop_reason(False, successes, trials, state)
                if reason is not None:
                    break
            if reason is None:
                # The engine returned fewer samples than asked: the schedule is spent all the same.
                reason = N_MAX
        finally:
            if is_baseline and not baseline.finished:
                # A failed baseline must not leave its rows waiting.
                await baseline.update(baseline.state, True)
        completions = tuple(completion for result in results for completion in result.completions)
        merged = CompletionResult(completions, results[0].prompt_num_tokens)
        # Counted over the looks as drawn (an engine that returned fewer samples moves them).
        estimate = rao_blackwell_potential(self._rule, is_baseline, successes, looks) if trials else None
        return Drawn(merged, rounds=len(results), stop_reason=reason, rao_blackwell_potential=estimate)


async def draw_row(
    rounds: ProblemRounds | None, request: CompletionRequest, fraction: float, key: tuple[str, str], draw: Draw
) -> Drawn:
    """A row drawn in one go (``rounds`` None: no sampling plan) or round by round."""
    if rounds is None:
        return Drawn(await draw(request), rounds=0, stop_reason="")
    return await rounds.draw(request, fraction, key, draw)


def with_sample_counts(
    summary: RunSummary, samples_drawn: int, rows: int, plan: SamplingPlan | None, n: int
) -> RunSummary:
    """The summary with the samples drawn over its ``rows`` and what brute force would have drawn."""
    brute_force = row_samples_at_most(n, plan) * rows
    return dataclasses.replace(summary, samples_drawn=samples_drawn, samples_brute_force=brute_force)
