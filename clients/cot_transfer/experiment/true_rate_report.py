"""report.md's headline rates: the true unlock rate first, then what this run's n measures, and
how many samples would shrink the interval (``cot_transfer.domain.true_rate``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy import stats

from cot_transfer.experiment.markdown_tables import bounds, percent, rate_with_interval

# "What n = X measures" is shown on a problem this far below tau.
_BELOW_TAU = 0.05


def _full_range(interval: Mapping[str, float] | None) -> bool:
    return interval is not None and interval["low"] <= 0.0 and interval["high"] >= 1.0


def _counted_unlocked(potential: float, n: int, tau: float) -> float:
    """P(a row of n samples of a true potential reaches tau)."""
    need = max(0, int(-(-tau * n // 1)))
    return float(stats.binom.sf(need - 1, n, potential))


def headline_rates(summary: Mapping[str, Any]) -> list[str]:
    """The headline's rate lines at the last fraction; none for a run without results."""
    per_fraction = summary.get("per_fraction") or []
    if not per_fraction:
        return []
    final = per_fraction[-1]
    level = round(100 * float(summary["confidence"]))
    thresholds = summary["thresholds"]
    tau0, tau = float(thresholds["baseline_max_potential"]), float(thresholds["unlock_min_potential"])
    n = summary.get("n_samples")
    where = f"with the full CoT ({percent(final['fraction'])} of the CoT)"
    interval = final.get("true_unlock_rate_interval")
    lines = [
        f"- **true unlock rate** {where}: {bounds(interval)} ({level}% bounds that hold at any n): the share of"
        f" truly unsolved problems (true baseline potential <= {tau0:g}) whose true potential reaches {tau:g}.",
    ]
    decide = summary.get("samples_to_decide") or {}
    if _full_range(interval) and tau0 <= 0.0:
        lines.append(
            "  It is **not identified** at tau0 = 0: a problem whose true baseline potential is 0.001 gives 0 of n"
            " correct at any affordable n, exactly like one at 0, so no problem is surely unsolved and the data"
            " allow any rate. Set a baseline threshold above 0 to identify it (0 of n is then surely below"
            " tau0 = 0.05 from n = 59 samples at baseline, below 0.1 from n = 29)."
        )
    elif _full_range(interval):
        baseline_n = decide.get("baseline_n")
        needed = f" 0 of n is surely below tau0 = {tau0:g} from n = {baseline_n} at baseline." if baseline_n else ""
        lines.append(
            "  It is **not identified** at this n: no problem is decided on both sides of the thresholds." + needed
        )
    measured_interval = final.get("true_unlock_rate_measured_unsolved_interval")
    estimate = final.get("true_unlock_rate")
    lines.append(
        f"- of the {final['unsolved_evaluated']} problems *measured* unsolved at baseline, the share whose true"
        f" potential reaches {tau:g}: {bounds(measured_interval)}; point estimate {percent(estimate)} (each"
        " problem's posterior probability of reaching tau under a beta prior fitted to these rows, averaged; it"
        " takes the measured baseline as the truth)."
    )
    measured = rate_with_interval(final.get("unlock_rate"), final.get("unlock_rate_interval"))
    counted = f"{final['unlocked']} of {final['unsolved_evaluated']}"
    if isinstance(n, int):
        example = _counted_unlocked(tau - _BELOW_TAU, n, tau)
        lines.append(
            f"- measured at n = {n}: {measured} ({counted}): what n = {n} measures, the share *counted* unlocked"
            f" (>= {tau:g} of {n} samples) among those counted unsolved. It moves with n: a problem of true"
            f" potential {tau - _BELOW_TAU:g} counts as unlocked {percent(example)} of the time at n = {n}."
        )
    else:
        lines.append(
            f"- measured at this run's n (it varies by row): {measured} ({counted}), the share counted unlocked"
            " among those counted unsolved; it moves with n."
        )
    more = decide.get("unlock_status_n")
    if decide:
        target = percent(decide["undecided_share_target"])
        if more is None:
            sentence = f"no n up to 4096 would bring that under {target} (their potentials sit at tau)"
        elif more <= decide["n"]:
            sentence = f"this n already keeps it under {target}, so more problems, not more samples, narrow the bounds"
        else:
            sentence = (
                f"n = {more} samples per prefix would bring it under {target} (projected from their posterior means;"
                " more problems narrow the rest)"
            )
        baseline_n = decide.get("baseline_n")
        baseline = (
            "no n decides the baseline side at tau0 = 0"
            if baseline_n is None
            else f"the baseline side needs n >= {baseline_n} at fraction 0"
        )
        lines.append(
            f"- samples: at n = {decide['n']}, {decide['unlock_undecided']} of the {decide['measured_unsolved']}"
            f" measured-unsolved problems have an undecided unlock status; {sentence}; {baseline}."
        )
    free = final.get("true_unlock_rate_without_answer_interval")
    free_measured = rate_with_interval(
        final.get("unlock_rate_without_answer"), final.get("unlock_rate_without_answer_interval")
    )
    lines.append(
        f"- without the answer ({final.get('unsolved_without_answer', 0)} baseline-unsolved problems whose CoT gives"
        f" no answer away before the last fraction): measured {free_measured}, true {bounds(free)}."
    )
    first = summary.get("first_unlock_fraction")
    lines.append(
        "- first fraction that unlocks: "
        + ("none" if first is None else percent(first))
        + f" (the first whose {level}% band of the unlock rate, holding at every fraction at once, is above 0)."
    )
    return lines
