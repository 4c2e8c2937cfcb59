"""Samples drawn against brute force: the ``sampling`` block of ``summary.json`` and report.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.sampling_plan import sampling_plan_from_dict


def sampling_summary(settings: Mapping[str, Any], rows: Sequence[FractionResult]) -> dict[str, Any]:
    """Weak samples the rows drew, what n (n_max under adaptive sampling) for every row would
    have drawn, and under adaptive sampling why rows stopped."""
    plan = sampling_plan_from_dict(settings.get("sampling_plan"))
    n_brute_force = plan.n_max if plan is not None else settings.get("n_samples")
    drawn = sum(row.n for row in rows)
    brute_force = int(n_brute_force) * len(rows) if isinstance(n_brute_force, int) else None
    return {
        "adaptive": plan is not None,
        "plan": plan.to_dict() if plan is not None else None,
        "rule": plan.rule if plan is not None else None,
        # What each row's ``potential`` is (FractionResult.potential); num_correct and n stay raw.
        "potential_estimate": "rao_blackwell" if plan is not None else "num_correct / n",
        "rows": len(rows),
        "samples_drawn": drawn,
        "samples_brute_force": brute_force,
        "sample_ratio": drawn / brute_force if brute_force else None,
        "stop_reasons": dict(Counter(row.stop_reason for row in rows if row.stop_reason)),
    }


def sampling_line(summary: Mapping[str, Any]) -> str | None:
    """The report's "samples drawn" cell, None for a brute-force run."""
    sampling = summary.get("sampling") or {}
    if not sampling.get("adaptive"):
        return None
    ratio = sampling.get("sample_ratio")
    share = f" ({ratio:.1%})" if ratio is not None else ""
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(sampling.get("stop_reasons", {}).items()))
    plan = sampling["plan"]
    return (
        f"{sampling['samples_drawn']} of {sampling['samples_brute_force']} brute force{share};"
        f" adaptive n_max {plan['n_max']}, rule {sampling.get('rule') or 'mixture_cs'}, error rate"
        f" {plan['error_rate']:g}; rows stopped: {reasons or 'none'}; row potentials: Rao-Blackwell estimates"
    )
