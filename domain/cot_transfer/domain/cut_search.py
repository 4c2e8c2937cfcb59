"""The cut-point search: where a CoT's potential curve unlocks and where it jumps, without
evaluating every step.

A search run (``CutMode.SEARCH``) cuts the CoT after every step, as an every-step run does, but
draws samples at only some of those cuts. Cut ``0`` is the empty prefix (the baseline) and cut
``M - 1`` the whole CoT; cut ``k`` holds the first ``k`` steps' worth of the CoT (the every-step
prefixes in order). The search looks for two points of the curve ``p_0 .. p_{M-1}``:

* the **unlock point**: the first cut whose potential reaches tau (``Thresholds.reaches_unlock``
  on the row's ``num_correct / n``: the rule the analysis and brute force use);
* the **largest jump**: the cut ``k`` with the largest rise ``p_k - p_{k-1}`` (the rows' own
  potential estimates), when that rise is at least ``min_jump``: a curve that never rises that
  much in one step (flat, or a slow ramp) has no jump to place.

It probes in waves, each wave's rows drawn together (each decided by the run's sampling plan,
so a cut far from tau costs a round or two):

1. a grid: cuts ``0``, ``M - 1`` and ``grid - 1`` evenly spaced ones between;
2. then, until no wave is left, the midpoint of every *bracket* (two neighbouring probed cuts
   with unprobed cuts between them) that may hold what is searched for:

   * the bracket before the first probed cut that reaches tau (bisection for the unlock point),
     and once that bracket is one step wide, the cut before its left end (a check that the
     curve was not already up and dipped back just before the crossing);
   * each bracket whose rise is at least the largest rise already resolved to one step, less
     ``jump_margin``, and at least ``min_jump`` (branch and bound for the jump: under
     monotonicity inside a bracket, no single step in it rises more than the bracket does);
   * each bracket whose potential *falls* by more than ``jump_margin``: the curve is not monotone
     there (a tangent), so the bracket may hide a peak; it is split until resolved.

What it assumes, and so what it can miss: inside a bracket whose ends are both below tau and
whose potentials do not fall, the curve does not rise above tau and come back (a bump between
two probes); and no bracket's single-step rise exceeds the bracket's total rise by more than
``jump_margin`` (a dip and a recovery inside one bracket, that is a tangent whose two ends sit
between the same two probes, can hide a larger jump). Probes that show a fall are refined, so a
tangent is found whenever one of its cuts is probed. On a curve that is monotone up to noise it
finds the unlock point exactly (the crossing it returns has a probed cut below tau just before
it, so it is a crossing whatever the curve) and the largest jump up to the rows' noise.

The search is a pure function of what its probes showed: the service runs it, and the client
replays it over a results folder's rows to resume a search or to tell whether it is finished.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from cot_transfer.domain.json_fields import json_fields
from cot_transfer.domain.sequential import StoppingRule
from cot_transfer.domain.sequential_estimates import rao_blackwell_potential
from cot_transfer.domain.transfer import Thresholds

# Probes of the first wave, the ends included: enough that the bisections that follow start
# from brackets a quarter of the CoT wide.
DEFAULT_GRID = 5
# A bracket whose rise is within this of the best resolved jump is still refined: the rows'
# estimates are noisy (an adaptive row may stop after 8 samples).
DEFAULT_JUMP_MARGIN = 0.15
# A bracket that rises less than this holds no jump worth locating.
DEFAULT_MIN_JUMP = 0.2


@dataclass(frozen=True)
class SearchSettings:
    """How a search probes (part of a search run's settings)."""

    grid: int = DEFAULT_GRID
    jump_margin: float = DEFAULT_JUMP_MARGIN
    min_jump: float = DEFAULT_MIN_JUMP

    def to_dict(self) -> dict[str, float]:
        return json_fields(self)


@dataclass(frozen=True)
class Probe:
    """One probed cut's row: its samples and its potential estimate."""

    num_correct: int
    n: int
    potential: float


@dataclass(frozen=True)
class SearchResult:
    """What a search found over ``cuts`` cuts: the unlock cut (None: no probed cut reaches tau, or
    the bracket before the first one that does is not resolved), the largest resolved jump's cut
    and rise (None: no two neighbouring cuts probed rise ``min_jump`` or more), and the cuts probed."""

    cuts: int
    probed: tuple[int, ...]
    unlock_cut: int | None
    jump_cut: int | None
    jump_rise: float | None
    finished: bool
    non_monotone: bool = False

    def to_dict(self) -> dict[str, object]:
        return json_fields(self)


@dataclass
class CutSearch:
    """The search over one CoT's ``cuts`` cuts for one (receiver, mode): ``observe`` each probed
    row, ``next_wave`` for the cuts to probe next (empty: finished)."""

    cuts: int
    thresholds: Thresholds
    settings: SearchSettings = field(default_factory=SearchSettings)
    probes: dict[int, Probe] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cuts < 1:
            raise ValueError(f"a search needs at least one cut, got {self.cuts}")
        if self.settings.grid < 2:
            raise ValueError(f"the grid needs at least its two ends, got {self.settings.grid}")

    def observe(self, cut: int, num_correct: int, n: int, potential: float | None = None) -> None:
        if not 0 <= cut < self.cuts:
            raise ValueError(f"cut {cut} is outside 0..{self.cuts - 1}")
        if n <= 0:
            raise ValueError(f"a probe needs samples, got n = {n}")
        self.probes[cut] = Probe(num_correct, n, num_correct / n if potential is None else potential)

    def grid(self) -> tuple[int, ...]:
        last = self.cuts - 1
        points = min(self.settings.grid, self.cuts)
        return tuple(sorted({round(index * last / (points - 1)) for index in range(points)})) if last else (0,)

    def _reaches(self, cut: int) -> bool:
        probe = self.probes[cut]
        return bool(self.thresholds.reaches_unlock(probe.num_correct / probe.n))

    def _baseline_solved(self) -> bool:
        probe = self.probes.get(0)
        return probe is not None and not self.thresholds.unsolved_at_baseline(probe.num_correct / probe.n)

    def _brackets(self) -> list[tuple[int, int]]:
        probed = sorted(self.probes)
        return list(itertools.pairwise(probed))

    def _rise(self, left: int, right: int) -> float:
        return self.probes[right].potential - self.probes[left].potential

    def _unlock_bracket(self) -> tuple[int, int] | None:
        """(the probed cut before the first probed cut that reaches tau, that cut); None when none reaches."""
        first = next((cut for cut in sorted(self.probes) if cut > 0 and self._reaches(cut)), None)
        if first is None:
            return None
        return max(cut for cut in self.probes if cut < first), first

    def _best_jump(self) -> tuple[int, float] | None:
        resolved = [(right, self._rise(left, right)) for left, right in self._brackets() if right - left == 1]
        return max(resolved, key=lambda jump: (jump[1], -jump[0]), default=None)

    def next_wave(self) -> tuple[int, ...]:
        """The cuts to probe next, in order; empty once the search is finished."""
        grid = [cut for cut in self.grid() if cut not in self.probes]
        if grid:
            return tuple(grid)
        if self._baseline_solved():
            # A problem solved alone has no unlock point, and under a sampling plan its rows stop
            # after one round, too few samples to place a jump.
            return ()
        wanted: set[int] = set()
        bracket = self._unlock_bracket()
        if bracket is not None:
            before, first = bracket
            if first - before > 1:
                wanted.add((before + first) // 2)
            elif before >= 2 and before - 1 not in self.probes:
                # The crossing is resolved; one cut further left checks that the curve was not
                # already up and dipped back (a tangent ending at ``before``). If it reaches, the
                # first reaching cut moves left and the bisection goes on from there.
                wanted.add(before - 1)
        best = self._best_jump()
        floor = max(self.settings.min_jump, (best[1] if best else -math.inf) - self.settings.jump_margin)
        for left, right in self._brackets():
            if right - left < 2:
                continue
            rise = self._rise(left, right)
            if rise >= floor or -rise > self.settings.jump_margin:
                wanted.add((left + right) // 2)
        return tuple(sorted(wanted))

    def result(self) -> SearchResult:
        best = self._best_jump()
        bracket = self._unlock_bracket()
        unlock = None
        if bracket is not None and not self._baseline_solved():
            before, first = bracket
            unlock = first if first - before == 1 else None
        falls = any(-self._rise(left, right) > self.settings.jump_margin for left, right in self._brackets())
        jump = best if best is not None and best[1] >= self.settings.min_jump else None
        return SearchResult(
            cuts=self.cuts,
            probed=tuple(sorted(self.probes)),
            unlock_cut=unlock,
            jump_cut=jump[0] if jump else None,
            jump_rise=jump[1] if jump else None,
            finished=not self.next_wave(),
            non_monotone=falls,
        )


def replay(
    cuts: int,
    thresholds: Thresholds,
    rows: Mapping[int, Probe] | Iterable[tuple[int, Probe]],
    settings: SearchSettings | None = None,
) -> CutSearch:
    """The search as far as ``rows`` (probed cut -> its row) take it: the service's waves are a
    function of what was probed, so a results folder's rows give back the search that drew them."""
    search = CutSearch(cuts, thresholds, settings or SearchSettings())
    items = rows.items() if isinstance(rows, Mapping) else rows
    for cut, probe in items:
        search.observe(cut, probe.num_correct, probe.n, probe.potential)
    return search


def simulated_probe(
    rule: StoppingRule, rng: np.random.Generator, potential: float, baseline: bool, baseline_state: int
) -> Probe:
    """A row of true ``potential`` drawn round by round under ``rule`` as the service draws it, for
    simulations from known truth (the rows above cut 0 see the baseline's final state)."""
    successes = trials = 0
    looks = []
    for size in rule.plan.round_sizes():
        successes += int(rng.binomial(size, potential))
        trials += size
        looks.append(trials)
        seen = int(rule.baseline_side(successes, trials)) if baseline else baseline_state
        if rule.stop_reason(baseline, successes, trials, seen) is not None:
            break
    return Probe(successes, trials, rao_blackwell_potential(rule, baseline, successes, looks))


def every_step_points(
    potentials: list[float], thresholds: Thresholds, baseline_solved: bool, min_jump: float = DEFAULT_MIN_JUMP
) -> tuple[int | None, int | None]:
    """The unlock cut and largest-jump cut of a fully evaluated curve (what every-step finds, by the
    search's definitions), for comparing a search with it; ``potentials`` by cut, ``baseline_solved``
    from cut 0."""
    unlock = None
    if not baseline_solved:
        unlock = next((cut for cut in range(1, len(potentials)) if thresholds.reaches_unlock(potentials[cut])), None)
    rises = [(potentials[cut] - potentials[cut - 1], -cut) for cut in range(1, len(potentials))]
    best = max(rises, default=None)
    jump = -best[1] if best is not None and best[0] >= min_jump else None
    return unlock, jump
