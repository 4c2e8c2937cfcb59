"""`cot-transfer plan`: what an experiment costs before it runs, brute force beside adaptive.

Cost model (stated in the output): each problem's strong CoT is ``cot_tokens`` long; the weak
model continues a prefix at fraction f to the end of the reasoning, so a sample decodes
``(1 - f) * cot_tokens + answer_tokens``; the prefill of a row's prompt (``f * cot_tokens``) is
computed once per row thanks to the prefix cache and is reported, not timed. Wall time is strong
decode tokens / strong throughput + weak decode tokens / weak throughput (the two phases are
not overlapped, so it is an upper bound for one replica of each).

Adaptive samples per row are the stopping rule's exact expectation
(``cot_transfer.domain.sequential.expected_samples``) under a prior of true potentials: a
Beta(a, b) for every row independently (``--prior``), or the potentials measured in an earlier
results folder (``--from-results``), problem by problem.

Cut points (a second table): every step of a CoT of ``--steps-per-cot`` steps (an assumption:
about 60 lines for a Qwen3-32B MATH-500 CoT; the steps taken as equally long), brute force and
adaptive, beside the cut-point search (``cot_transfer.domain.cut_search``). The search's cost is
simulated on ``SEARCH_CURVES`` insight curves with a fixed seed (potential 0 before a step drawn
uniformly, U(0.6, 1) from it on, the testbed's shape): the search sees each probe's true
potential and each probed row costs the stopping rule's expectation at it, so the search's
samples are the expected probes times the adaptive samples per probe. Noisy rows add a probe or
two near the jump; a curve solved at baseline stops after the grid (cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cot_transfer.domain.cut_search import CutSearch
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.sequential import (
    DEFAULT_ERROR_RATE,
    DEFAULT_ROUNDS,
    DEFAULT_RULE,
    RULES,
    SamplingPlan,
    StoppingRule,
    expected_samples,
)
from cot_transfer.domain.transfer import DEFAULT_BASELINE_MAX_POTENTIAL, DEFAULT_UNLOCK_MIN_POTENTIAL, Thresholds
from cot_transfer.domain.truncation import normalize_fractions, with_baseline

PAPER_FRACTIONS = tuple(round(0.1 * step, 1) for step in range(11))
DEFAULT_PRIOR = (0.3, 0.3)
# Quadrature points of the Beta prior: expected samples are smooth in the potential.
_PRIOR_POINTS = 24
_LARGEST_PLAN = 1 << 20
# The cut points' defaults: steps (lines) of a Qwen3-32B MATH-500 CoT, about; the simulated
# curves and their seed (a few dozen: the mean probe count settles to within a probe or so).
DEFAULT_STEPS_PER_COT = 60
SEARCH_CURVES = 40
SEARCH_SEED = 0


class PlanError(ValueError):
    """A plan command line that asks for something inconsistent."""


# The adaptive options change results: `run --resume` takes them from the folder.
ADAPTIVE_SETTING_OPTIONS = ("adaptive", "error_rate", "target_width", "rounds", "stopping_rule")


def _rounds(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def add_adaptive_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--adaptive`` and its plan: for `run`, `demo` and `plan`. Absent options stay None, so
    `run --resume` can tell that none was given."""
    parser.add_argument(
        "--adaptive",
        action="store_true",
        default=None,
        help="adaptive sampling: --n is n_max; a (problem, fraction) stops once its unlock decision is settled",
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        help=f"adaptive: decision error rate of a stopped row (default {DEFAULT_ERROR_RATE})",
    )
    parser.add_argument(
        "--target-width", type=float, help="adaptive: also stop once the potential's interval is this narrow"
    )
    parser.add_argument(
        "--rounds",
        type=_rounds,
        help="adaptive: comma-separated samples per round, the last repeating"
        f" (default {','.join(map(str, DEFAULT_ROUNDS))})",
    )
    parser.add_argument(
        "--stopping-rule",
        choices=RULES,
        help=f"adaptive: the stopping rule (default {DEFAULT_RULE}; README, Adaptive sampling)",
    )


def sampling_plan_from_args(args: argparse.Namespace, n: int) -> SamplingPlan | None:
    """The plan the adaptive options ask for, with ``n`` as n_max; None without ``--adaptive``."""
    extras = [
        name
        for name in ("error_rate", "target_width", "rounds", "stopping_rule")
        if getattr(args, name, None) is not None
    ]
    if not getattr(args, "adaptive", None):
        if extras:
            raise PlanError(f"--{extras[0].replace('_', '-')} needs --adaptive")
        return None
    plan = SamplingPlan(
        n_max=n,
        rounds=args.rounds or DEFAULT_ROUNDS,
        error_rate=args.error_rate if args.error_rate is not None else DEFAULT_ERROR_RATE,
        target_width=args.target_width,
        rule=args.stopping_rule or DEFAULT_RULE,
    )
    try:
        # The service checks its own limits; here only that the plan is well formed.
        return plan.check(max_n=_LARGEST_PLAN, max_rounds=_LARGEST_PLAN, field="adaptive plan")
    except InvalidArgumentError as error:
        raise PlanError(str(error)) from error


@dataclass(frozen=True)
class Cost:
    samples: float
    weak_tokens: float
    strong_tokens: float
    prefill_tokens: float

    def wall_s(self, strong_tokens_per_s: float, weak_tokens_per_s: float) -> float:
        return self.strong_tokens / strong_tokens_per_s + self.weak_tokens / weak_tokens_per_s


def _per_sample_tokens(fractions: Sequence[float], cot_tokens: float, answer_tokens: float) -> np.ndarray:
    return np.asarray([(1.0 - fraction) * cot_tokens + answer_tokens for fraction in fractions])


def brute_force_cost(
    problems: int, fractions: Sequence[float], n: int, cot_tokens: float, answer_tokens: float
) -> Cost:
    per_sample = _per_sample_tokens(fractions, cot_tokens, answer_tokens)
    return Cost(
        samples=float(problems * len(fractions) * n),
        weak_tokens=float(problems * n * per_sample.sum()),
        strong_tokens=float(problems * cot_tokens),
        prefill_tokens=float(problems * cot_tokens * sum(fractions)),
    )


def _cost_of_rows(
    row_samples: np.ndarray, per_sample: np.ndarray, problems: int, cot_tokens: float, prefilled: float
) -> Cost:
    """``prefilled``: the sum of the fractions of the rows drawn (each prompt is prefilled once)."""
    return Cost(
        samples=float(problems * row_samples.sum()),
        weak_tokens=float(problems * (row_samples * per_sample).sum()),
        strong_tokens=float(problems * cot_tokens),
        prefill_tokens=float(problems * cot_tokens * prefilled),
    )


def adaptive_cost_under_prior(
    rule: StoppingRule,
    problems: int,
    fractions: Sequence[float],
    prior: tuple[float, float],
    cot_tokens: float,
    answer_tokens: float,
) -> Cost:
    """Expected cost with every row's true potential drawn from Beta(prior), independently."""
    # Midpoints in probability of equal-mass bins of the prior: a quadrature of E[.] over it.
    grid = stats.beta.ppf((np.arange(_PRIOR_POINTS) + 0.5) / _PRIOR_POINTS, *prior)
    # Rows above 0 all share the prior, so one expectation serves every fraction.
    per_problem = np.mean([expected_samples(rule, float(p0), list(grid)) for p0 in grid], axis=0)
    baseline, other = float(per_problem[0]), float(np.mean(per_problem[1:]))
    row_samples = np.asarray([baseline if fraction == 0.0 else other for fraction in fractions])
    return _cost_of_rows(
        row_samples, _per_sample_tokens(fractions, cot_tokens, answer_tokens), problems, cot_tokens, sum(fractions)
    )


def adaptive_cost_from_rows(
    rule: StoppingRule,
    problems: int,
    fractions: Sequence[float],
    measured: dict[str, dict[float, float]],
    cot_tokens: float,
    answer_tokens: float,
) -> Cost:
    """Expected cost with the potentials an earlier run measured (problem id -> fraction ->
    potential), its problems standing for the planned ones; a fraction it lacks takes the
    mean of that problem's measured potentials."""
    totals = np.zeros(len(fractions))
    used = 0
    for curve in measured.values():
        if 0.0 not in curve:
            continue
        fallback = float(np.mean(list(curve.values())))
        others = [curve.get(fraction, fallback) for fraction in fractions if fraction != 0.0]
        samples = expected_samples(rule, curve[0.0], others)
        totals += np.asarray(samples if fractions[0] == 0.0 else samples[1:])
        used += 1
    if used == 0:
        raise PlanError("the results folder has no problem with a fraction-0 row")
    per_sample = _per_sample_tokens(fractions, cot_tokens, answer_tokens)
    return _cost_of_rows(totals / used, per_sample, problems, cot_tokens, sum(fractions))


@dataclass(frozen=True)
class CutPointCosts:
    """Every step of a CoT of ``steps`` steps (``steps + 1`` cuts, the baseline included) by brute
    force and adaptive, and the cut-point search's expected cost, its rows brute or adaptive."""

    steps: int
    mean_probes: float
    every_step_brute: Cost
    every_step_adaptive: Cost
    search_brute: Cost
    search_adaptive: Cost

    def rows(self, n: int) -> list[tuple[str, Cost]]:
        return [
            (f"every step, brute force (n = {n})", self.every_step_brute),
            (f"every step, adaptive (n_max = {n})", self.every_step_adaptive),
            (f"cut-point search, brute rows (n = {n})", self.search_brute),
            (f"cut-point search, adaptive (n_max = {n})", self.search_adaptive),
        ]


def search_curves(cuts: int, count: int = SEARCH_CURVES, seed: int = SEARCH_SEED) -> list[np.ndarray]:
    """Insight curves over ``cuts`` cuts: 0 before a step drawn uniformly in 1..cuts-1, U(0.6, 1)
    from it on (the module docstring's assumption)."""
    rng = np.random.default_rng(seed)
    points = np.arange(cuts)
    return [np.where(points >= rng.integers(1, cuts), rng.uniform(0.6, 1.0), 0.0) for _ in range(count)]


def _probed(cuts: int, rule: StoppingRule, curve: np.ndarray) -> np.ndarray:
    """Which cuts the search probes on ``curve``, each probe showing its true potential."""
    search = CutSearch(cuts, rule.thresholds)
    n = rule.plan.n_max
    while wave := search.next_wave():
        for cut in wave:
            search.observe(cut, round(float(curve[cut]) * n), n, float(curve[cut]))
    mask = np.zeros(cuts)
    mask[list(search.probes)] = 1.0
    return mask


def cut_point_costs(
    rule: StoppingRule, problems: int, steps: int, cot_tokens: float, answer_tokens: float
) -> CutPointCosts:
    """Expected costs over ``search_curves`` (the module docstring's cost model)."""
    if steps < 1:
        raise PlanError(f"--steps-per-cot must be at least 1, got {steps}")
    cuts = steps + 1
    fractions = [cut / steps for cut in range(cuts)]
    per_sample = _per_sample_tokens(fractions, cot_tokens, answer_tokens)
    adaptive_rows, search_rows, probe_share = np.zeros(cuts), np.zeros(cuts), np.zeros(cuts)
    curves = search_curves(cuts)
    for curve in curves:
        rows = np.asarray(expected_samples(rule, float(curve[0]), [float(p) for p in curve[1:]]))
        probed = _probed(cuts, rule, curve)
        adaptive_rows += rows
        search_rows += rows * probed
        probe_share += probed
    adaptive_rows, search_rows, probe_share = (
        adaptive_rows / len(curves),
        search_rows / len(curves),
        probe_share / len(curves),
    )
    searched_prefill = float(probe_share @ np.asarray(fractions))
    n = rule.plan.n_max
    return CutPointCosts(
        steps=steps,
        mean_probes=float(probe_share.sum()),
        every_step_brute=brute_force_cost(problems, fractions, n, cot_tokens, answer_tokens),
        every_step_adaptive=_cost_of_rows(adaptive_rows, per_sample, problems, cot_tokens, sum(fractions)),
        search_brute=_cost_of_rows(n * probe_share, per_sample, problems, cot_tokens, searched_prefill),
        search_adaptive=_cost_of_rows(search_rows, per_sample, problems, cot_tokens, searched_prefill),
    )


def _measured_curves(run_dir: Path) -> tuple[dict[str, dict[float, float]], float | None]:
    from cot_transfer.experiment.results_folder import load_run

    run = load_run(run_dir)
    curves: dict[str, dict[float, float]] = {}
    cot_lengths = []
    for row in run.weak_rows:
        curves.setdefault(row.problem_id, {})[row.fraction] = row.potential
        if row.cot_num_tokens:
            cot_lengths.append(row.cot_num_tokens)
    return curves, (float(np.mean(cot_lengths)) if cot_lengths else None)


async def measure_throughput(args: argparse.Namespace, problem: str, answer: str) -> tuple[float, float, float]:
    """(strong tokens/s, weak tokens/s, mean strong CoT tokens) from a short run against the
    service: ``--measure-requests`` concurrent strong CoTs, then as many concurrent weak requests
    of 8 samples on the half-way prefix of one. Concurrent, because a run keeps both engines
    batching: one stream alone measures latency, not the throughput a run gets."""
    from cot_transfer.cli.connection import connection_options
    from cot_transfer.client import CotTransferClient
    from cot_transfer.domain.requests import Prefix, StrongAnswer

    async with CotTransferClient(args.address, application=args.application, **connection_options(args)) as client:

        async def one_cot() -> tuple[int, str]:
            half, cot_tokens = "", 0
            async for event in client.stream_prefixes(problem, [0.5]):
                if isinstance(event, Prefix):
                    half = event.text
                elif isinstance(event, StrongAnswer):
                    cot_tokens = event.cot_num_tokens
            return cot_tokens, half

        started = time.perf_counter()
        cots = await asyncio.gather(*(one_cot() for _ in range(args.measure_requests)))
        strong_s = time.perf_counter() - started
        prefix = cots[0][1]
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                client.complete(problem, reference_answer=answer, prefix=prefix, n=8)
                for _ in range(args.measure_requests)
            )
        )
        weak_s = time.perf_counter() - started
    strong_tokens = sum(tokens for tokens, _ in cots)
    weak_tokens = sum(sample.num_tokens for result in results for sample in result.completions)
    return max(strong_tokens, 1) / strong_s, max(weak_tokens, 1) / weak_s, strong_tokens / len(cots)


def _human(value: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


def format_plan(rows: Sequence[tuple[str, Cost]], strong_tps: float, weak_tps: float) -> str:
    lines = [
        "| plan | weak samples | weak decode tokens | strong decode tokens | prefill tokens (cached) | wall time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = rows[0][1].samples
    for name, cost in rows:
        share = "" if cost.samples == base else f" ({cost.samples / base:.0%})"
        lines.append(
            f"| {name} | {_human(cost.samples)}{share} | {_human(cost.weak_tokens)} | {_human(cost.strong_tokens)}"
            f" | {_human(cost.prefill_tokens)} | {_duration(cost.wall_s(strong_tps, weak_tps))} |"
        )
    return "\n".join(lines)


def plan_command(args: argparse.Namespace) -> int:
    problems_list: list[Any] = []
    if args.problems is not None:
        from cot_transfer.experiment.datasets import SelectionError, choose, dataset_options_from_args, load_problems

        options = dataset_options_from_args(args)
        try:  # the problems the run would use: --ids, --sample, --limit
            problems_list = choose(load_problems(args.problems, options), options)
        except SelectionError as error:
            raise PlanError(str(error)) from None
    problems = len(problems_list) if problems_list else args.num_problems
    if not problems:
        raise PlanError("give --problems FILE or --num-problems N")
    fractions = tuple(with_baseline(normalize_fractions(args.fractions or PAPER_FRACTIONS)))
    n = args.n if args.n is not None else args.n_default
    thresholds = Thresholds(
        args.tau0 if args.tau0 is not None else DEFAULT_BASELINE_MAX_POTENTIAL,
        args.tau if args.tau is not None else DEFAULT_UNLOCK_MIN_POTENTIAL,
    )
    plan = sampling_plan_from_args(args, n) or SamplingPlan(n_max=n)
    curves, measured_cot = _measured_curves(args.from_results) if args.from_results is not None else ({}, None)
    cot_tokens = args.cot_tokens if args.cot_tokens is not None else measured_cot
    strong_tps, weak_tps = args.strong_tokens_per_s or args.tokens_per_s, args.tokens_per_s
    source = f"given: {weak_tps or 0:g} weak tokens/s, {strong_tps or 0:g} strong tokens/s"
    if args.address is not None:
        if not problems_list:
            raise PlanError("--address measures on the first problem: give --problems")
        first = problems_list[0]
        strong_tps, weak_tps, sampled_cot = asyncio.run(measure_throughput(args, first.problem, first.answer))
        cot_tokens = cot_tokens if cot_tokens is not None else sampled_cot
        source = f"measured against {args.address}: {weak_tps:.0f} weak tokens/s, {strong_tps:.0f} strong tokens/s"
    if not weak_tps or not strong_tps:
        raise PlanError("give --tokens-per-s (and optionally --strong-tokens-per-s) or --address to measure")
    if cot_tokens is None:
        raise PlanError("give --cot-tokens (mean strong CoT length), --from-results or --address")
    rule = StoppingRule(plan, thresholds)
    brute = brute_force_cost(problems, fractions, n, cot_tokens, args.answer_tokens)
    if curves:
        adaptive = adaptive_cost_from_rows(rule, problems, fractions, curves, cot_tokens, args.answer_tokens)
        prior = f"potentials measured in {args.from_results} ({len(curves)} problems)"
    else:
        adaptive = adaptive_cost_under_prior(rule, problems, fractions, args.prior, cot_tokens, args.answer_tokens)
        prior = f"every row's potential ~ Beta({args.prior[0]:g}, {args.prior[1]:g})"
    cut_points = cut_point_costs(rule, problems, args.steps_per_cot, cot_tokens, args.answer_tokens)
    print(
        f"{problems} problems x {len(fractions)} fractions, n = {n}; strong CoT {cot_tokens:.0f} tokens,"
        f" weak answer tail {args.answer_tokens:g} tokens; throughput {source}"
    )
    rounds = ",".join(map(str, plan.round_sizes()))
    print(
        f"adaptive ({plan.rule}): rounds {rounds}, error rate {plan.error_rate:g},"
        f" tau0 {thresholds.baseline_max_potential:g}, tau {thresholds.unlock_min_potential:g};"
        f" expected samples under {prior}"
    )
    print(format_plan([(f"brute force (n = {n})", brute), (f"adaptive (n_max = {n})", adaptive)], strong_tps, weak_tps))
    print()
    print(
        f"cut points: every step of a {cut_points.steps}-step CoT ({cut_points.steps + 1} cuts with the baseline;"
        " --steps-per-cot, an assumption: equally long steps), beside the cut-point search (--cut search): on"
        f" {SEARCH_CURVES} simulated insight curves (seed {SEARCH_SEED}) it probes {cut_points.mean_probes:.1f} cuts"
        f" of {cut_points.steps + 1} on average, each probe's samples the stopping rule's expectation at its"
        " potential"
    )
    print(format_plan(cut_points.rows(n), strong_tps, weak_tps))
    return 0


def _prior(text: str) -> tuple[float, float]:
    name, _, values = text.partition(":")
    parts = values.split(",")
    if name != "beta" or len(parts) != 2:
        raise argparse.ArgumentTypeError("--prior takes beta:A,B")
    a, b = float(parts[0]), float(parts[1])
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError("--prior beta:A,B needs A, B > 0")
    return a, b


def add_plan_parser(commands: Any, experiment_options: Any, connection_options: Any) -> None:
    """Registers `plan`; ``experiment_options`` adds the shared experiment options (``--problems``,
    ``--fractions``, ``--n``, the adaptive ones, ...), ``connection_options`` the token and TLS ones
    that ``--address`` uses."""
    plan = commands.add_parser("plan", help="expected tokens, samples and wall time of an experiment, before it runs")
    experiment_options(plan, n_default=128)
    plan.add_argument("--num-problems", type=int, help="problem count when no --problems file is given (e.g. 500)")
    plan.add_argument("--cot-tokens", type=float, help="mean strong CoT length in tokens")
    plan.add_argument("--answer-tokens", type=float, default=0.0, help="weak tokens after the reasoning (default 0)")
    plan.add_argument("--tokens-per-s", type=float, help="weak decode throughput, tokens/s")
    plan.add_argument("--strong-tokens-per-s", type=float, help="strong decode throughput (default: --tokens-per-s)")
    plan.add_argument("--address", help="measure both throughputs against the service at HOST:PORT")
    plan.add_argument("--application", default="cot_transfer", help="Ray Serve application name")
    connection_options(plan)
    plan.add_argument(
        "--measure-requests", type=int, default=8, help="concurrent strong CoTs and weak requests of the measurement"
    )
    plan.add_argument(
        "--prior", type=_prior, default=DEFAULT_PRIOR, help="prior of row potentials, beta:A,B (default beta:0.3,0.3)"
    )
    plan.add_argument(
        "--from-results", type=Path, metavar="DIR", help="take the potentials of an earlier results folder"
    )
    plan.add_argument(
        "--steps-per-cot",
        type=int,
        default=DEFAULT_STEPS_PER_COT,
        help="steps (lines) per strong CoT for the every-step and cut-point search costs; an assumption"
        f" (default {DEFAULT_STEPS_PER_COT}, about a Qwen3-32B MATH-500 CoT's lines)",
    )
