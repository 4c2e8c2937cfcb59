"""Adaptive sampling against brute force on the standard workload: samples drawn and decisions.

    python -m benchmarks.adaptive --n-max 128            # served: starts a stack, two runs
    python -m benchmarks.adaptive --n-max 128 --replay runs/bench/adaptive/brute_force.jsonl
    python -m benchmarks.adaptive --simulate [--stopping-rule mixture_cs]   # no stack
    python -m benchmarks.adaptive --operating-characteristics   # exact, both rules, no stack

Served: brute force (n = n_max for every row) and adaptive sampling
(``SamplingPlan(n_max)``), both on the CoTs of one short run, imported, so both complete the same
prefixes, with the same weak seed, so a row's adaptive samples are the first of its brute-force row's.
Replay (no stack): each brute-force row's n_max outcomes are shuffled and the stopping rule is
run on them in order, so the adaptive "run" draws from the same samples (a coupled comparison,
which agrees at least as often as two independent runs would).

``--operating-characteristics`` prints, exactly over the path tree (``sequential_estimates``), one
row's bias (Rao-Blackwell potential and k / t at the stop), its interval's coverage at the stopping
time, expected samples and decided-wrong rate under both stopping rules.

Keys (``benchmarks/results.json``):

* ``adaptive_sample_ratio``: weak samples the adaptive run drew / (n_max x rows);
* ``adaptive_decision_agreement``: share of (problem, fraction) rows whose decision equals brute
  force's; the decision is *unsolved at baseline* at fraction 0 and *unlocked* above it;
* ``adaptive_unlock_rates_within_brute_force_ci``: every fraction's adaptive unlock rate lies in
  the brute-force run's 95% Clopper-Pearson interval (fractions where both are defined).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.results import TARGETS
from cot_transfer.domain.analysis import analyze
from cot_transfer.domain.requests import FractionResult, Problem, StrongCot
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sequential import (
    BONFERRONI_CP,
    DEFAULT_RULE,
    MIXTURE_CS,
    N_MAX,
    RULES,
    SamplingPlan,
    StoppingRule,
)
from cot_transfer.domain.sequential_estimates import operating_characteristics, row_potential
from cot_transfer.domain.steps import CutMode
from cot_transfer.domain.transfer import Thresholds

# The comparison's fields that results.json also holds at the top level, beside its ``adaptive`` block.
RESULTS_KEYS = ("adaptive_sample_ratio", "adaptive_decision_agreement", "adaptive_unlock_rates_within_brute_force_ci")


@dataclass
class AdaptiveComparison:
    method: str  # "served" (two runs against the stack) or "replay" (the brute-force samples reshuffled)
    n_max: int
    rule: str  # the adaptive run's stopping rule (SamplingPlan.rule)
    rows: int
    samples_drawn: int
    adaptive_sample_ratio: float
    adaptive_decision_agreement: float
    adaptive_unlock_rates_within_brute_force_ci: bool
    per_fraction: list[dict[str, Any]]
    stop_reasons: dict[str, int]
    seconds_brute_force: float | None = None
    seconds_adaptive: float | None = None
    # Simulation only: the same decision agreement between two independent brute-force runs (the
    # noise floor any second run meets) and between adaptive and brute force on the same samples.
    brute_force_repeat_agreement: float | None = None
    same_samples_agreement: float | None = None
    within_ci_share: float | None = None

    def keys(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in RESULTS_KEYS}


def decisions(rows: Sequence[FractionResult], thresholds: Thresholds) -> dict[tuple[str, float], bool]:
    # Decisions read k / n (on a decided adaptive row, the stopping rule's call), not the row's
    # Rao-Blackwell potential, which may sit on the other side of tau.
    baseline = {row.problem_id: row.num_correct / row.n for row in rows if row.fraction == 0.0}
    out = {}
    for row in rows:
        if row.problem_id not in baseline:
            continue
        unsolved = bool(thresholds.unsolved_at_baseline(baseline[row.problem_id]))
        reaches = bool(thresholds.reaches_unlock(row.num_correct / row.n))
        out[(row.problem_id, row.fraction)] = unsolved if row.fraction == 0.0 else unsolved and reaches
    return out


def decision_agreement(
    first: Sequence[FractionResult], second: Sequence[FractionResult], thresholds: Thresholds
) -> tuple[int, int]:
    """The (problem, fraction) rows whose decision is the same in both runs, and the rows both decided."""
    first_decisions = decisions(first, thresholds)
    second_decisions = decisions(second, thresholds)
    shared = first_decisions.keys() & second_decisions.keys()
    return sum(first_decisions[key] == second_decisions[key] for key in shared), len(shared)


def compare(
    brute: Sequence[FractionResult],
    adaptive: Sequence[FractionResult],
    n_max: int,
    thresholds: Thresholds,
    method: str,
    rule: str = DEFAULT_RULE,
) -> AdaptiveComparison:
    equal, shared = decision_agreement(brute, adaptive, thresholds)
    agreement = equal / shared
    brute_stats = analyze(brute, thresholds=thresholds, with_dynamics=False).per_fraction
    adaptive_stats = {
        stats.fraction: stats for stats in analyze(adaptive, thresholds=thresholds, with_dynamics=False).per_fraction
    }
    per_fraction = []
    within = True
    for stats in brute_stats:
        other = adaptive_stats.get(stats.fraction)
        rate = other.unlock_rate if other is not None else None
        interval = stats.unlock_rate_interval
        inside = None
        if rate is not None and interval is not None:
            inside = interval.low - 1e-12 <= rate <= interval.high + 1e-12
            within = within and inside
        per_fraction.append(
            {
                "fraction": stats.fraction,
                "brute_force_unlock_rate": stats.unlock_rate,
                "brute_force_interval": None if interval is None else [interval.low, interval.high],
                "adaptive_unlock_rate": rate,
                "inside": inside,
            }
        )
    drawn = sum(row.n for row in adaptive)
    reasons: dict[str, int] = {}
    for row in adaptive:
        reasons[row.stop_reason or "none"] = reasons.get(row.stop_reason or "none", 0) + 1
    return AdaptiveComparison(
        method=method,
        n_max=n_max,
        rule=rule,
        rows=len(adaptive),
        samples_drawn=drawn,
        adaptive_sample_ratio=drawn / (n_max * len(adaptive)),
        adaptive_decision_agreement=agreement,
        adaptive_unlock_rates_within_brute_force_ci=within,
        per_fraction=per_fraction,
        stop_reasons=reasons,
    )


def replay_adaptive(
    brute: Sequence[FractionResult], plan: SamplingPlan, thresholds: Thresholds, seed: int
) -> list[FractionResult]:
    """The adaptive rows the stopping rule gives on each brute-force row's own samples, shuffled."""
    rule = StoppingRule(plan, thresholds)
    rng = random.Random(seed)
    by_problem: dict[str, list[FractionResult]] = {}
    for row in brute:
        by_problem.setdefault(row.problem_id, []).append(row)
    out: list[FractionResult] = []
    schedule = plan.schedule()
    for rows in by_problem.values():
        streams = {}
        for row in rows:
            outcomes = [True] * row.num_correct + [False] * (row.n - row.num_correct)
            rng.shuffle(outcomes)
            streams[row.fraction] = outcomes
        # The baseline's state after each of its rounds, as the other rows see it.
        base = streams.get(0.0)
        base_states: list[int] = []
        if base is not None:
            for total in schedule:
                state = int(rule.baseline_side(sum(base[:total]), total))
                base_states.append(state)
                if rule.stop_reason(True, sum(base[:total]), total, state) is not None:
                    break
        for row in rows:
            outcomes = streams[row.fraction]
            is_baseline = row.fraction == 0.0
            reason, drawn = N_MAX, len(outcomes)
            drawn_so_far = 0
            for index, total in enumerate(schedule):
                if not is_baseline and index > 0 and base_states:
                    state = base_states[min(index, len(base_states)) - 1]
                    stop = rule.stop_reason(False, sum(outcomes[:drawn_so_far]), drawn_so_far, state)
                    if stop is not None:
                        reason, drawn = stop, drawn_so_far
                        break
                drawn_so_far = total
                successes = sum(outcomes[:total])
                state = int(rule.baseline_side(successes, total)) if is_baseline else 0
                stop = rule.stop_reason(is_baseline, successes, total, state)
                if stop is not None:
                    reason, drawn = stop, total
                    break
            successes = sum(outcomes[:drawn])
            estimate = row_potential(rule, is_baseline, successes, drawn)
            out.append(
                replace(
                    row,
                    n=drawn,
                    num_correct=successes,
                    rounds=sum(1 for total in schedule if total <= drawn),
                    stop_reason=reason,
                    rao_blackwell_potential=estimate,
                )
            )
    return out


def simulated_rows(
    problems: int, fractions: Sequence[float], n: int, prior: tuple[float, float], rng: random.Random
) -> tuple[list[FractionResult], list[FractionResult]]:
    """Two independent brute-force runs of n samples per row (the second one is replayed as the
    adaptive run) on the same true potentials, each row's drawn from Beta(prior)."""
    first: list[FractionResult] = []
    second: list[FractionResult] = []
    for problem in range(problems):
        for fraction in fractions:
            p = rng.betavariate(*prior)
            for rows in (first, second):
                rows.append(FractionResult(f"p{problem}", fraction, 0, 0, n, sum(rng.random() < p for _ in range(n))))
    return first, second


def simulated_comparison(
    problems: int,
    fractions: Sequence[float],
    n_max: int,
    prior: tuple[float, float],
    repeats: int,
    seed: int,
    rule: str = DEFAULT_RULE,
) -> AdaptiveComparison:
    """The comparison on simulated workloads of the standard size: brute force against an
    independent adaptive run, averaged over ``repeats`` workloads (within-CI: all of them)."""
    rng = random.Random(seed)
    plan = SamplingPlan(n_max, rule=rule)
    runs = []
    repeat_agreement: list[float] = []
    same_agreement: list[float] = []
    for index in range(repeats):
        brute, other = simulated_rows(problems, fractions, n_max, prior, rng)
        adaptive = replay_adaptive(other, plan, Thresholds(), seed + index)
        runs.append(compare(brute, adaptive, n_max, Thresholds(), f"simulation, potentials ~ Beta{prior}", rule))
        repeat_agreement.append(compare(brute, other, n_max, Thresholds(), "repeat").adaptive_decision_agreement)
        same_agreement.append(compare(other, adaptive, n_max, Thresholds(), "same").adaptive_decision_agreement)
    last = runs[-1]
    reasons: dict[str, int] = {}
    for run in runs:
        for reason, count in run.stop_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return replace(
        last,
        rows=sum(run.rows for run in runs),
        samples_drawn=sum(run.samples_drawn for run in runs),
        adaptive_sample_ratio=sum(run.samples_drawn for run in runs) / (n_max * sum(run.rows for run in runs)),
        adaptive_decision_agreement=sum(run.adaptive_decision_agreement * run.rows for run in runs)
        / sum(run.rows for run in runs),
        adaptive_unlock_rates_within_brute_force_ci=all(
            run.adaptive_unlock_rates_within_brute_force_ci for run in runs
        ),
        stop_reasons=reasons,
        brute_force_repeat_agreement=sum(repeat_agreement) / repeats,
        same_samples_agreement=sum(same_agreement) / repeats,
        within_ci_share=sum(run.adaptive_unlock_rates_within_brute_force_ci for run in runs) / repeats,
        method=f"simulation of {repeats} standard-size workloads, every row's potential ~ Beta{prior}, "
        "brute force against an independent adaptive run",
    )


@dataclass(frozen=True)
class ServedAdaptive:
    """A served adaptive run on imported CoTs: what the decisions phase (``benchmarks.decisions``)
    compares with the offline script, which completes the same prefixes with the same seed."""

    strong: dict[str, StrongCot]  # the imported CoTs as the service cut them, by problem
    rows: list[FractionResult]
    seconds: float
    weak: SamplingParams  # seeded


def seeded(weak: SamplingParams) -> SamplingParams:
    return weak if weak.seed is not None else replace(weak, seed=0)


async def served_events(
    stack: Any,
    batch: Sequence[Problem],
    fractions: Sequence[float],
    n: int,
    plan: SamplingPlan | None,
    strong: SamplingParams,
    weak: SamplingParams,
    cut: CutMode = CutMode.TOKEN,
) -> tuple[list[Any], float]:
    """One timed ``Transfer.Run``: its events and its wall time from the call to the last event."""
    from benchmarks.progress import timed_async
    from benchmarks.served import sampling_of

    async def go() -> list[Any]:
        async with stack.client(4 * 3600) as client:
            return [
                event
                async for event in client.run_transfer(
                    batch,
                    fractions,
                    n=n,
                    strong_sampling=sampling_of(strong),
                    weak_sampling=sampling_of(weak),
                    sampling_plan=plan,
                    cut=cut,
                )
            ]

    label = "adaptive" if plan is not None else f"brute force n={n}, {len(fractions)} fractions"
    if cut is not CutMode.TOKEN:
        label = f"{cut.value}, {label}"
    return await timed_async(f"{label} ({len(batch)} problems)", go())


async def imported_problems(
    stack: Any, problems: Sequence[Problem], strong: SamplingParams, weak: SamplingParams
) -> list[Problem]:
    """The problems with the CoTs of one short run (n = 1) imported: runs on them cut the same
    text into the same prefixes (a CoT re-tokenised from text can cut differently from its ids)."""
    events, _ = await served_events(stack, problems, (1.0,), 1, None, strong, weak)
    cots = {event.problem_id: event.cot for event in events if isinstance(event, StrongCot)}
    return [replace(problem, cot=cots[problem.id], cot_format="plain") for problem in problems if problem.id in cots]


async def served_adaptive(
    stack: Any,
    imported: Sequence[Problem],
    fractions: Sequence[float],
    n_max: int,
    strong: SamplingParams,
    weak: SamplingParams,
    rule: str = DEFAULT_RULE,
) -> ServedAdaptive:
    weak = seeded(weak)
    events, seconds = await served_events(
        stack, imported, fractions, n_max, SamplingPlan(n_max, rule=rule), strong, weak
    )
    return ServedAdaptive(
        strong={event.problem_id: event for event in events if isinstance(event, StrongCot)},
        rows=[event for event in events if isinstance(event, FractionResult)],
        seconds=seconds,
        weak=weak,
    )


async def served_comparison(
    stack: Any,
    problems: Sequence[Problem],
    fractions: Sequence[float],
    n_max: int,
    strong: SamplingParams,
    weak: SamplingParams,
    artifacts: Path,
    rule: str = DEFAULT_RULE,
) -> tuple[AdaptiveComparison, ServedAdaptive | None]:
    """Brute force, then adaptive, both on the CoTs of one short run, imported (the same prefixes);
    the comparison and the adaptive run (None where it failed and the replay stands in).

    Both runs are seeded alike, so the adaptive run's samples of a row are the first ones of the
    brute-force row's (see ``serving/adaptive.py``): the comparison measures what stopping early
    changes, not the noise between two independent runs (``--simulate`` reports that floor).
    """
    from benchmarks.progress import log

    weak = seeded(weak)
    imported = await imported_problems(stack, problems, strong, weak)
    brute_events, brute_s = await served_events(stack, imported, fractions, n_max, None, strong, weak)
    brute = [event for event in brute_events if isinstance(event, FractionResult)]
    await asyncio.to_thread(write_rows, artifacts / "brute_force.jsonl", brute)
    try:
        adaptive = await served_adaptive(stack, imported, fractions, n_max, strong, weak, rule)
    except Exception as error:  # the replay still measures the rule on the brute-force samples
        log(f"warning: the adaptive run failed ({error!r}); replaying the brute-force samples instead")
        replayed = replay_adaptive(brute, SamplingPlan(n_max, rule=rule), Thresholds(), 0)
        comparison = compare(brute, replayed, n_max, Thresholds(), "replay", rule)
        comparison.seconds_brute_force = brute_s
        return comparison, None
    await asyncio.to_thread(write_rows, artifacts / "adaptive.jsonl", adaptive.rows)
    comparison = compare(brute, adaptive.rows, n_max, Thresholds(), "served", rule)
    comparison.seconds_brute_force, comparison.seconds_adaptive = brute_s, adaptive.seconds
    return comparison, adaptive


def adaptive_phase(
    stack: Any, config: Any, workload: Any, problems: Sequence[Problem], n_max: int, artifacts: Path
) -> tuple[AdaptiveComparison, ServedAdaptive | None]:
    """The bench's ``--n-max`` phase, against its running stack, on the workload's problems and fractions."""
    from benchmarks.progress import timed

    outcome, _ = timed(
        f"adaptive against brute force at n_max={n_max}",
        lambda: asyncio.run(
            served_comparison(
                stack,
                problems,
                workload.fractions,
                n_max,
                config.strong.sampling.settings(),
                config.weak.sampling.settings(),
                artifacts / "adaptive",
            )
        ),
    )
    return outcome


def write_rows(path: Path, rows: Sequence[FractionResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(row)) + "\n" for row in rows))


def read_rows(path: Path) -> list[FractionResult]:
    fields = set(FractionResult.__dataclass_fields__)
    rows = []
    for line in path.read_text().splitlines():
        raw = {key: value for key, value in json.loads(line).items() if key in fields}
        raw["answer_counts"] = tuple(tuple(pair) for pair in raw.get("answer_counts", ()))
        raw["completions"] = tuple(raw.get("completions", ()))
        rows.append(FractionResult(**raw))
    return rows


def merge_into_results(comparison: AdaptiveComparison, path: Path) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(comparison.keys())
    data["adaptive"] = asdict(comparison)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _cell(value: float | bool) -> str:
    # Lower-case true/false, as results.json writes them.
    return str(value).lower() if isinstance(value, bool) else f"{value:.3f}"


def markdown(comparison: AdaptiveComparison) -> str:
    how = {
        "served": "two served runs on the same imported CoTs",
        "replay": "replay: the stopping rule on each brute-force row's own samples, shuffled (no second run)",
    }.get(comparison.method, comparison.method)
    return "\n".join(
        [
            f"Adaptive sampling ({comparison.rule}) against brute force, n_max = {comparison.n_max},"
            f" {comparison.rows} rows ({how}):",
            "",
            "| key | value | target |",
            "|---|---:|---|",
            *(f"| `{key}` | {_cell(value)} | {TARGETS[key].description} |" for key, value in comparison.keys().items()),
            "",
            f"Rows stopped: {', '.join(f'{k} {v}' for k, v in sorted(comparison.stop_reasons.items()))}.",
            *(
                []
                if comparison.brute_force_repeat_agreement is None
                else [
                    "Decision agreement of two independent brute-force runs:"
                    f" {comparison.brute_force_repeat_agreement:.3f}; adaptive against brute force on the same"
                    f" samples: {comparison.same_samples_agreement:.3f}; workloads with every unlock rate inside"
                    f" the brute-force interval: {comparison.within_ci_share:.0%}."
                ]
            ),
        ]
    )


OPERATING_PS = (0.01, 0.1, 0.3, 0.45, 0.5, 0.55, 0.7, 0.9)


def operating_tables(n_max: int) -> str:
    """Markdown: a row above fraction 0 under the default plan's schedule at n_max, each rule,
    exactly over the path tree (no stop from a solved baseline, which adds no bias: see
    ``sequential_estimates``)."""
    thresholds = Thresholds()
    rules = {name: StoppingRule(SamplingPlan(n_max, rule=name), thresholds) for name in (MIXTURE_CS, BONFERRONI_CP)}
    table = {(name, p): operating_characteristics(rule, False, p) for name, rule in rules.items() for p in OPERATING_PS}
    tau = thresholds.unlock_min_potential
    alpha = rules[BONFERRONI_CP].part_error_rate
    lines = [
        f"One row above fraction 0, n_max = {n_max}, schedule {rules[BONFERRONI_CP].plan.schedule()},"
        f" tau = {tau:g}, error rate {alpha:g}; exact (`sequential_estimates.operating_characteristics`).",
        "",
        "| p | E[samples] mixture_cs | E[samples] bonferroni_cp | ratio | decided wrong, mixture_cs"
        " | decided wrong, bonferroni_cp |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for p in OPERATING_PS:
        old, new = table[(MIXTURE_CS, p)], table[(BONFERRONI_CP, p)]
        wrong = [f"{row.decided_wrong:.4f}" for row in (old, new)]
        if p == tau:
            wrong = [f"{row.decided_below:.4f} below, {row.decided_above:.4f} above" for row in (old, new)]
        lines.append(
            f"| {p:g} | {old.expected_samples:.1f} | {new.expected_samples:.1f}"
            f" | {new.expected_samples / old.expected_samples:.3f} | {wrong[0]} | {wrong[1]} |"
        )
    lines += [
        "",
        f"At p = tau = {tau:g} neither side is wrong in substance; `Thresholds` counts p >= tau as reaching,"
        ' so "below" is the side the guarantee bounds.',
        "",
        "| rule | p | bias of k/t at the stop | bias of the Rao-Blackwell potential | RMSE k/t | RMSE Rao-Blackwell"
        " | coverage of the row interval |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    # The baseline row (tau0 = 0) stops at its first correct sample under either rule.
    baseline = {
        (f"{BONFERRONI_CP}, baseline row", p): operating_characteristics(rules[BONFERRONI_CP], True, p)
        for p in OPERATING_PS
    }
    for (name, p), row in {**table, **baseline}.items():
        lines.append(
            f"| {name} | {p:g} | {row.bias_share:+.4f} | {row.bias_rao_blackwell:+.1e} | {row.rmse_share:.4f}"
            f" | {row.rmse_rao_blackwell:.4f} | {row.interval_coverage:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.progress import timed
    from benchmarks.workload import ARTIFACTS, DEFAULT_CONFIG, DEFAULT_OUT, DEFAULT_PROBLEMS, STANDARD

    parser = argparse.ArgumentParser(prog="python -m benchmarks.adaptive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-max", type=int, default=128, help="n_max of the adaptive run and n of brute force")
    parser.add_argument("--replay", type=Path, help="brute-force rows (JSONL of FractionResult) to replay, no stack")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--problems-count", type=int, default=STANDARD.num_problems)
    parser.add_argument("--seed", type=int, default=0, help="replay: the shuffle's seed")
    parser.add_argument("--simulate", action="store_true", help="no stack: simulated workloads of the standard size")
    parser.add_argument("--prior", type=float, nargs=2, default=(0.3, 0.3), help="simulate: Beta prior of potentials")
    parser.add_argument("--repeats", type=int, default=20, help="simulate: workloads averaged over")
    parser.add_argument("--stopping-rule", choices=RULES, default=DEFAULT_RULE, help="the adaptive run's rule")
    parser.add_argument(
        "--operating-characteristics",
        action="store_true",
        help="no stack, nothing written: one row's exact bias, coverage, samples and wrong decisions, both rules",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON the keys are merged into")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS / "adaptive")
    args = parser.parse_args(argv)
    if args.operating_characteristics:
        print(operating_tables(args.n_max))
        return 0
    if args.simulate:
        comparison = simulated_comparison(
            args.problems_count,
            STANDARD.fractions,
            args.n_max,
            tuple(args.prior),
            args.repeats,
            args.seed,
            args.stopping_rule,
        )
    elif args.replay is not None:
        brute = read_rows(args.replay)
        adaptive = replay_adaptive(brute, SamplingPlan(args.n_max, rule=args.stopping_rule), Thresholds(), args.seed)
        comparison = compare(brute, adaptive, args.n_max, Thresholds(), "replay", args.stopping_rule)
    else:
        from benchmarks.stack import ServedStack, prepare_config
        from cot_transfer.experiment.datasets import load_problems

        args.artifacts.mkdir(parents=True, exist_ok=True)
        config_path, config = prepare_config(args.config, args.artifacts)
        problems = load_problems(args.problems)[: args.problems_count]
        stack = ServedStack(config_path, args.artifacts / "serve.log", config.auth_token_env)
        try:
            timed("starting the served stack", stack.start)
            comparison, _ = asyncio.run(
                served_comparison(
                    stack,
                    problems,
                    STANDARD.fractions,
                    args.n_max,
                    config.strong.sampling.settings(),
                    config.weak.sampling.settings(),
                    args.artifacts,
                    args.stopping_rule,
                )
            )
        finally:
            timed("stopping the served stack", stack.stop)
    merge_into_results(comparison, args.out)
    print(markdown(comparison))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
