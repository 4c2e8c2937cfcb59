"""A run's adaptive sampling plan (the wire's SamplingPlan); the rule that uses it is
``cot_transfer.domain.sequential``. Kept apart so the request types need no scipy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cot_transfer.domain.errors import InvalidArgumentError

DEFAULT_ROUNDS = (8, 8, 16, 32, 64)
DEFAULT_ERROR_RATE = 0.05

# The stopping rules (``cot_transfer.domain.sequential``), by name. Clopper-Pearson bounds with the
# error rate split over the schedule's looks (Bonferroni): the default, it stops sooner than the
# mixture confidence sequence at the same per-row guarantee. The mixture rule is the one run
# folders written before rules had names used.
BONFERRONI_CP = "bonferroni_cp"
MIXTURE_CS = "mixture_cs"
RULES = (BONFERRONI_CP, MIXTURE_CS)
DEFAULT_RULE = BONFERRONI_CP


@dataclass(frozen=True)
class SamplingPlan:
    """Adaptive sampling of a run (the wire's SamplingPlan).

    ``rounds``: samples per round; the last size repeats until ``n_max`` and a round that would
    pass n_max is cut to it. ``error_rate``: the decision error rate a stopped row holds.
    ``target_width``: also stop once the potential's interval is narrower than this.
    ``rule``: the stopping rule's name (``RULES``).
    """

    n_max: int
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    error_rate: float = DEFAULT_ERROR_RATE
    target_width: float | None = None
    rule: str = DEFAULT_RULE

    def check(self, max_n: int, max_rounds: int, field: str = "sampling_plan") -> SamplingPlan:
        if not 1 <= self.n_max <= max_n:
            raise InvalidArgumentError(f"{field}.n_max", f"must be in [1, {max_n}], got {self.n_max}")
        if not self.rounds:
            raise InvalidArgumentError(f"{field}.rounds", "at least one round is required")
        for index, size in enumerate(self.rounds):
            if size < 1:
                raise InvalidArgumentError(f"{field}.rounds[{index}]", f"must be at least 1, got {size}")
        if len(self.schedule()) > max_rounds:
            raise InvalidArgumentError(
                f"{field}.rounds",
                f"must reach n_max {self.n_max} in at most {max_rounds} rounds",
            )
        if math.isnan(self.error_rate) or not 0.0 < self.error_rate < 1.0:
            raise InvalidArgumentError(f"{field}.error_rate", f"must be in (0, 1), got {self.error_rate}")
        if self.target_width is not None and (math.isnan(self.target_width) or not 0.0 < self.target_width <= 1.0):
            raise InvalidArgumentError(f"{field}.target_width", f"must be in (0, 1], got {self.target_width}")
        if self.rule not in RULES:
            raise InvalidArgumentError(f"{field}.rule", f"must be one of {', '.join(RULES)}, got {self.rule!r}")
        return self

    def schedule(self) -> tuple[int, ...]:
        """Samples drawn by the end of each round, the last one n_max."""
        totals: list[int] = []
        drawn = 0
        index = 0
        while drawn < self.n_max:
            drawn = min(self.n_max, drawn + self.rounds[min(index, len(self.rounds) - 1)])
            totals.append(drawn)
            index += 1
        return tuple(totals)

    def round_sizes(self) -> tuple[int, ...]:
        totals = self.schedule()
        return tuple(total - previous for previous, total in zip((0, *totals[:-1]), totals, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The plan as a run folder's settings hold it (and hash it: a resume never mixes rules).
        The mixture rule is left unnamed, so folders from before rules had names keep their hash."""
        data: dict[str, Any] = {
            "n_max": self.n_max,
            "rounds": list(self.rounds),
            "error_rate": self.error_rate,
            "target_width": self.target_width,
        }
        if self.rule != MIXTURE_CS:
            data["rule"] = self.rule
        return data


def sampling_plan_from_dict(data: Any) -> SamplingPlan | None:
    """The plan of ``SamplingPlan.to_dict`` (a run folder's settings); None for a brute-force run."""
    if not data:
        return None
    width = data.get("target_width")
    return SamplingPlan(
        n_max=int(data["n_max"]),
        rounds=tuple(int(size) for size in data["rounds"]),
        error_rate=float(data["error_rate"]),
        target_width=float(width) if width is not None else None,
        rule=str(data.get("rule", MIXTURE_CS)),
    )
