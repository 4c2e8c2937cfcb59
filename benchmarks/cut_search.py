"""The cut-point search against every-step evaluation: where each puts the unlock point and the
largest jump, and the samples each draws.

    python -m benchmarks.cut_search                      # served: starts a stack, three runs
    python -m benchmarks.cut_search --simulate           # no stack: curves of known truth

Served (testbed v2 models, ``configs/local-cpu.yaml``): the CoTs of one short run are imported, so
the three runs cut the same text into the same prefixes, and the weak model is seeded alike in
all three (an adaptive row's samples are the first of the brute-force row's at that cut):

* every-step, brute force: every cut at n = 128 (the founding paper's protocol, and Thought
  Anchors' every-sentence resampling at about 100 samples a cut);
* every-step, adaptive: every cut under ``SamplingPlan(n_max=128)``;
* search: ``--cut search`` under the same plan.

Per problem it compares the search's unlock cut and largest-jump cut (``cut_search.replay`` over
its rows) with every-step brute force's (``every_step_points`` on its k / n), and with testbed
v2's ground truth: the cut whose prefix first holds the insight token (``positions.insight`` of
the dataset record). "Within one step" is |search - reference| <= 1. The jump is compared on the
problems unsolved at baseline only: a problem the weak model solves alone has no unlock point,
and an adaptive run stops its rows after one round, too few samples to place a jump (the search
stops there too).

Simulated (``--simulate``): curves of known truth in seven shapes (an insight step, a tangent that
dips back right after it, two rises, a smooth ramp, and plateaus at 0.4, 0.45 and 0.55 before the
rise: mass near tau), short (6-15 cuts, like the testbed) and long
(40-200, like a MATH-500 CoT cut at every line), every-step brute force at n = 128 on binomial
samples against the search with adaptive rows drawn by the stopping rule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cot_transfer.domain.cut_search import (
    CutSearch,
    Probe,
    SearchResult,
    every_step_points,
    replay,
    simulated_probe,
)
from cot_transfer.domain.requests import FractionResult, Problem
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sequential import SamplingPlan, StoppingRule
from cot_transfer.domain.steps import CutMode
from cot_transfer.domain.transfer import Thresholds

THRESHOLDS = Thresholds()  # tau0 = 0, tau = 0.5, as every benchmark here
N = 128


def within_one_step(found: int | None, reference: int | None) -> bool:
    """Both absent, or both present and at most one cut apart."""
    if found is None or reference is None:
        return found is reference
    return abs(found - reference) <= 1


@dataclass
class ProblemComparison:
    problem_id: str
    cuts: int
    probed: int
    baseline_unsolved: bool
    every_step_unlock: int | None
    every_step_jump: int | None
    search_unlock: int | None
    search_jump: int | None
    truth_insight: int | None  # testbed ground truth: the first cut holding the insight token
    search_samples: int
    every_step_samples: int
    every_step_adaptive_samples: int


@dataclass
class SearchComparison:
    method: str
    problems: int
    unsolved_at_baseline: int
    unlock_within_one_step: float
    jump_within_one_step: float  # over the problems unsolved at baseline
    jump_within_one_step_of_truth: float | None  # search's jump against the insight cut
    every_step_jump_within_one_step_of_truth: float | None
    sample_ratio_vs_every_step: float
    sample_ratio_vs_every_step_adaptive: float
    cuts_probed_share: float
    seconds: dict[str, float]
    per_problem: list[dict[str, Any]]


def curve_of(rows: Sequence[FractionResult]) -> dict[str, dict[int, FractionResult]]:
    by_problem: dict[str, dict[int, FractionResult]] = {}
    for row in rows:
        by_problem.setdefault(row.problem_id, {})[row.num_steps] = row
    return by_problem


def insight_cut(record: dict[str, Any], prefix_tokens: Sequence[int]) -> int | None:
    """The first cut whose prefix holds the insight token (testbed v2's ground truth);
    ``prefix_tokens``: each cut's prefix length in strong tokens."""
    position = (record.get("metadata") or {}).get("positions", {}).get("insight")
    if not position:
        return None
    return next((cut for cut, tokens in enumerate(prefix_tokens) if tokens > position["token"]), None)


def complete_curves(rows: Sequence[FractionResult]) -> dict[str, dict[int, FractionResult]]:
    """Every-step rows by problem and cut, for the problems that have every cut (0 to the whole CoT)."""
    return {
        problem_id: cuts
        for problem_id, cuts in curve_of(rows).items()
        if set(cuts) == set(range(len(cuts))) and cuts[len(cuts) - 1].fraction == 1.0
    }


def compare_served(
    every_step: Sequence[FractionResult],
    every_step_adaptive: Sequence[FractionResult],
    searched: Sequence[FractionResult],
    records: dict[str, dict[str, Any]],
    seconds: dict[str, float],
) -> SearchComparison:
    """The three runs' rows compared per problem; a problem without every every-step row or
    without search rows (it failed in one run) is left out of all."""
    brute, adaptive, search = complete_curves(every_step), curve_of(every_step_adaptive), curve_of(searched)
    problems = []
    for problem_id, curve in brute.items():
        if problem_id not in search:
            continue
        cuts = len(curve)
        ks = [curve[cut].num_correct / curve[cut].n for cut in range(cuts)]
        unsolved = bool(THRESHOLDS.unsolved_at_baseline(ks[0]))
        reference = every_step_points(ks, THRESHOLDS, baseline_solved=not unsolved)
        found = replay(
            cuts,
            THRESHOLDS,
            {cut: Probe(row.num_correct, row.n, row.potential) for cut, row in search[problem_id].items()},
        ).result()
        problems.append(
            ProblemComparison(
                problem_id=problem_id,
                cuts=cuts,
                probed=len(found.probed),
                baseline_unsolved=unsolved,
                every_step_unlock=reference[0],
                every_step_jump=reference[1],
                search_unlock=found.unlock_cut,
                search_jump=found.jump_cut,
                truth_insight=insight_cut(
                    records.get(problem_id, {}), [curve[cut].prefix_num_tokens for cut in range(cuts)]
                ),
                search_samples=sum(row.n for row in search[problem_id].values()),
                every_step_samples=sum(row.n for row in curve.values()),
                every_step_adaptive_samples=sum(row.n for row in adaptive.get(problem_id, {}).values()),
            )
        )
    return summarise("served", problems, seconds)


def summarise(method: str, problems: Sequence[ProblemComparison], seconds: dict[str, float]) -> SearchComparison:
    """``truth_insight`` None means "no truth recorded" in a served comparison (those problems are
    left out of the truth columns) and "no jump" in a simulation, where the truth is always known."""
    unsolved = [problem for problem in problems if problem.baseline_unsolved]
    with_truth = [problem for problem in unsolved if method == "simulated" or problem.truth_insight is not None]

    def share(count: int, of: int) -> float:
        return count / of if of else float("nan")

    return SearchComparison(
        method=method,
        problems=len(problems),
        unsolved_at_baseline=len(unsolved),
        unlock_within_one_step=share(
            sum(within_one_step(p.search_unlock, p.every_step_unlock) for p in problems), len(problems)
        ),
        jump_within_one_step=share(
            sum(within_one_step(p.search_jump, p.every_step_jump) for p in unsolved), len(unsolved)
        ),
        jump_within_one_step_of_truth=share(
            sum(within_one_step(p.search_jump, p.truth_insight) for p in with_truth), len(with_truth)
        )
        if with_truth
        else None,
        every_step_jump_within_one_step_of_truth=share(
            sum(within_one_step(p.every_step_jump, p.truth_insight) for p in with_truth), len(with_truth)
        )
        if with_truth
        else None,
        sample_ratio_vs_every_step=share(
            sum(p.search_samples for p in problems), sum(p.every_step_samples for p in problems)
        ),
        sample_ratio_vs_every_step_adaptive=share(
            sum(p.search_samples for p in problems), sum(p.every_step_adaptive_samples for p in problems)
        ),
        cuts_probed_share=share(sum(p.probed for p in problems), sum(p.cuts for p in problems)),
        seconds=seconds,
        per_problem=[asdict(problem) for problem in problems],
    )


# --- simulated: curves of known truth ------------------------------------------------------------


def step_curve(rng: np.random.Generator, cuts: int) -> np.ndarray:
    """An insight: 0 before one step, 0.6-1 from it on (the testbed's curves)."""
    return np.where(np.arange(cuts) >= rng.integers(1, cuts), rng.uniform(0.6, 1.0), 0.0)


def tangent_curve(rng: np.random.Generator, cuts: int) -> np.ndarray:
    """An insight step, back down to 0.1 at the next cut (a tangent), up for good after."""
    curve = step_curve(rng, cuts)
    step = int(np.argmax(curve > 0))
    if step + 2 < cuts:
        curve[step + 1] = 0.1
    return curve


def _two_rises(rng: np.random.Generator, cuts: int) -> np.ndarray:
    first = int(rng.integers(1, cuts - 1))
    second = int(rng.integers(first + 1, cuts))
    curve = np.zeros(cuts)
    curve[first:] = rng.uniform(0.2, 0.45)
    curve[second:] = rng.uniform(0.7, 1.0)
    return curve


def _ramp(rng: np.random.Generator, cuts: int) -> np.ndarray:
    return np.linspace(0.0, rng.uniform(0.6, 1.0), cuts)


def plateau_curve(level: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Curves that sit at ``level`` for many steps: 0, then ``level`` from an early cut, then
    0.7-1 from a cut in the second half. With ``level`` just under tau (mass at the threshold)
    every cut of the plateau is a chance to read above tau; the true unlock point is the last
    rise. With ``level`` above tau it is the plateau's first cut."""

    def draw(rng: np.random.Generator, cuts: int) -> np.ndarray:
        start = int(rng.integers(1, max(2, cuts // 3)))
        rise = int(rng.integers(max(start + 1, cuts // 2), cuts))
        curve = np.zeros(cuts)
        curve[start:rise] = level
        curve[rise:] = rng.uniform(0.7, 1.0)
        return curve

    return draw


SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "insight step": step_curve,
    "tangent after the step": tangent_curve,
    "two rises": _two_rises,
    "smooth ramp": _ramp,
    # tau is 0.5 (THRESHOLDS)
    "plateau at 0.4, then the step": plateau_curve(0.4),
    "plateau at 0.45 (at the threshold), then the step": plateau_curve(0.45),
    "plateau at 0.55, then the step": plateau_curve(0.55),
}
LENGTHS = {"short (6-15 cuts)": (6, 16), "long (40-199 cuts)": (40, 200)}


def simulated(problems: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    """Every shape at both lengths: the search (adaptive rows) against every-step brute force
    at n = 128 on the same curves, and every-step's own agreement with the truth."""
    rule = StoppingRule(SamplingPlan(n_max=N), THRESHOLDS)
    rng = np.random.default_rng(seed)
    table = []
    for length, bounds in LENGTHS.items():
        for shape, draw in SHAPES.items():
            compared = []
            truth_unlock = truth_jump = search_truth_unlock = 0
            for index in range(problems):
                cuts = int(rng.integers(*bounds))
                curve = draw(rng, cuts)
                counts = rng.binomial(N, curve)
                unlock, jump = every_step_points(list(counts / N), THRESHOLDS, baseline_solved=bool(counts[0] > 0))
                true_unlock, true_jump = every_step_points(list(curve), THRESHOLDS, baseline_solved=False)
                truth_unlock += within_one_step(unlock, true_unlock)
                truth_jump += within_one_step(jump, true_jump)
                baseline = simulated_probe(rule, rng, curve[0], True, 0)
                state = 1 if baseline.num_correct else -1
                search = CutSearch(cuts, THRESHOLDS)
                adaptive_samples = baseline.n + sum(
                    simulated_probe(rule, rng, curve[cut], False, state).n for cut in range(1, cuts)
                )
                while wave := search.next_wave():
                    for cut in wave:
                        row = baseline if cut == 0 else simulated_probe(rule, rng, curve[cut], False, state)
                        search.observe(cut, row.num_correct, row.n, row.potential)
                found: SearchResult = search.result()
                search_truth_unlock += within_one_step(found.unlock_cut, true_unlock)
                compared.append(
                    ProblemComparison(
                        problem_id=f"{shape}-{index}",
                        cuts=cuts,
                        probed=len(found.probed),
                        baseline_unsolved=not counts[0],
                        every_step_unlock=unlock,
                        every_step_jump=jump,
                        search_unlock=found.unlock_cut,
                        search_jump=found.jump_cut,
                        truth_insight=true_jump,
                        search_samples=sum(probe.n for probe in search.probes.values()),
                        every_step_samples=N * cuts,
                        every_step_adaptive_samples=adaptive_samples,
                    )
                )
            summary = summarise("simulated", compared, {})
            table.append(
                {
                    "length": length,
                    "shape": shape,
                    **{key: value for key, value in asdict(summary).items() if key not in ("per_problem", "seconds")},
                    "search_unlock_within_one_step_of_truth": search_truth_unlock / problems,
                    "every_step_unlock_within_one_step_of_truth": truth_unlock / problems,
                }
            )
    return table


def simulated_markdown(table: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| CoT length | Curve | Unlock within 1 step of every-step | Jump within 1 step of every-step"
        " | Unlock within 1 step of truth (search / every-step) | Jump within 1 step of truth (search / every-step)"
        " | Samples / every-step | Samples / every-step adaptive | Cuts probed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        lines.append(
            f"| {row['length']} | {row['shape']} | {row['unlock_within_one_step']:.1%}"
            f" | {row['jump_within_one_step']:.1%}"
            f" | {row['search_unlock_within_one_step_of_truth']:.1%}"
            f" / {row['every_step_unlock_within_one_step_of_truth']:.1%}"
            f" | {row['jump_within_one_step_of_truth']:.1%} / {row['every_step_jump_within_one_step_of_truth']:.1%}"
            f" | {row['sample_ratio_vs_every_step']:.3f} | {row['sample_ratio_vs_every_step_adaptive']:.2f}"
            f" | {row['cuts_probed_share']:.1%} |"
        )
    return "\n".join(lines)


# --- served -----------------------------------------------------------------------------------


async def served(
    stack: Any, problems: Sequence[Problem], strong: SamplingParams, weak: SamplingParams
) -> dict[str, Any]:
    from benchmarks.adaptive import imported_problems, seeded, served_events

    weak = seeded(weak)
    imported = await imported_problems(stack, problems, strong, weak)
    plan = SamplingPlan(n_max=N)

    async def run(cut: CutMode, plan: SamplingPlan | None) -> tuple[list[FractionResult], float]:
        events, seconds = await served_events(stack, imported, (0.0, 1.0), N, plan, strong, weak, cut)
        return [event for event in events if isinstance(event, FractionResult)], seconds

    every_step, brute_s = await run(CutMode.EVERY_STEP, None)
    every_step_adaptive, adaptive_s = await run(CutMode.EVERY_STEP, plan)
    searched, search_s = await run(CutMode.SEARCH, plan)
    return {
        "rows": {"every_step": every_step, "every_step_adaptive": every_step_adaptive, "search": searched},
        "seconds": {"every_step": brute_s, "every_step_adaptive": adaptive_s, "search": search_s},
    }


RUNS = ("every_step", "every_step_adaptive", "search")


def served_comparison(out: Path, problems_path: Path, count: int, config_path: Path) -> dict[str, Any]:
    """The three runs against a stack of their own; their rows land in ``out`` (``--from-rows``
    compares them again without a stack)."""
    from benchmarks.adaptive import write_rows
    from benchmarks.progress import timed
    from benchmarks.stack import ServedStack, prepare_config
    from cot_transfer.experiment.datasets import load_problems

    config_file, config = prepare_config(config_path, out)
    stack = ServedStack(config_file, out / "serve.log", config.auth_token_env)
    try:
        timed("starting the served stack", stack.start)
        outcome = asyncio.run(
            served(
                stack,
                load_problems(problems_path)[:count],
                config.strong.sampling.settings(),
                config.weak.sampling.settings(),
            )
        )
    finally:
        timed("stopping the served stack", stack.stop)
    for name in RUNS:
        write_rows(out / f"{name}.jsonl", outcome["rows"][name])
    (out / "seconds.json").write_text(json.dumps(outcome["seconds"], indent=1))
    return dict(outcome["seconds"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cut_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulate", action="store_true", help="curves of known truth only (no stack)")
    parser.add_argument(
        "--from-rows", action="store_true", help="compare the rows an earlier served run left in --out (no stack)"
    )
    parser.add_argument("--problems", type=Path, default=None, help="JSONL problems (default testbed-hard)")
    parser.add_argument("--count", type=int, default=32, help="problems of the served comparison")
    parser.add_argument("--config", type=Path, default=None, help="serving config (default configs/local-cpu.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/cut_search"), help="rows and the comparison")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.from_rows:
        table = simulated()
        print(simulated_markdown(table))
        (args.out / "simulated.json").write_text(json.dumps(table, indent=1))
        if args.simulate:
            return 0

    from benchmarks.adaptive import read_rows
    from benchmarks.workload import DEFAULT_CONFIG, DEFAULT_PROBLEMS

    path = args.problems or DEFAULT_PROBLEMS
    if args.from_rows:
        seconds = json.loads((args.out / "seconds.json").read_text()) if (args.out / "seconds.json").is_file() else {}
    else:
        seconds = served_comparison(args.out, path, args.count, args.config or DEFAULT_CONFIG)
    records = {record["id"]: record for record in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
    rows = {name: read_rows(args.out / f"{name}.jsonl") for name in RUNS}
    comparison = compare_served(rows["every_step"], rows["every_step_adaptive"], rows["search"], records, seconds)
    result = asdict(comparison)
    (args.out / "served.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({key: value for key, value in result.items() if key != "per_problem"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
