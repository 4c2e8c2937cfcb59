"""Time to the paper's decisions: the served adaptive run against the offline script a researcher
would write instead, on the same prefixes at n = n_max.

    python -m benchmarks.decisions --n-max 128                 # its own stack, then the offline script
    python -m benchmarks.bench --n-max 128 --decisions         # a phase of the harness (--full runs it)

The offline script is brute force: every (problem, fraction) completed n_max times in one vLLM
``LLM.generate`` call with prefix caching on, graded, then decided. It reuses the served run's
strong CoTs as the service cut them (the same prefixes, token for token), builds each weak prompt
with the service's own ``ReasoningCodec``, gives each the service's budget (the weak budget minus
the prefix), grades with the service's grader and decides with the same thresholds
(``benchmarks.adaptive.decisions``). It samples with the served run's seed, and vLLM seeds sample j
with seed + j, so a served adaptive row's samples are the first of the offline row's: the agreement
measures whether the service reaches the script's decisions, not the noise between two runs
(``python -m benchmarks.adaptive --simulate`` gives that floor).

Runs after the served stack is stopped: on CPU both would share the cores, on a GPU its memory.
``LLM`` starts its engine in a spawned process, so this runs under ``if __name__ == "__main__":``.

Keys (``benchmarks/results.json``): ``decisions_speedup_vs_offline`` (the offline script's wall
time over the served adaptive run's) and ``decisions_agreement_vs_offline`` (the share of
(problem, fraction) decisions equal between the two); the ``decisions`` block holds the parts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.adaptive import (
    ServedAdaptive,
    decision_agreement,
    imported_problems,
    served_adaptive,
    write_rows,
)
from cot_transfer.domain.requests import FractionResult, Problem, StrongCot
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.transfer import Thresholds

# The comparison's fields that results.json also holds at the top level, beside its ``decisions`` block.
RESULTS_KEYS = ("decisions_speedup_vs_offline", "decisions_agreement_vs_offline")


@dataclass
class DecisionsComparison:
    n: int  # the adaptive run's n_max, the offline script's n
    rows: int  # (problem, fraction) rows both decided
    rows_agreeing: int
    served_adaptive_seconds: float
    served_adaptive_samples: int
    # Prompts built, ``LLM.generate``, grading and decisions; the engine already started.
    offline_seconds: float
    offline_engine_start_s: float
    offline_samples: int
    offline_generated_tokens: int
    weak_seed: int | None
    decisions_speedup_vs_offline: float
    decisions_agreement_vs_offline: float
    strong_cots: str = (
        "the served adaptive run's imported CoTs, as the service cut them, are the offline script's prefixes"
    )

    def keys(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in RESULTS_KEYS}


def compare_decisions(
    served: Sequence[FractionResult],
    served_seconds: float,
    offline: Sequence[FractionResult],
    offline_seconds: float,
    offline_engine_start_s: float,
    offline_generated_tokens: int,
    n: int,
    weak_seed: int | None,
    thresholds: Thresholds,
) -> DecisionsComparison:
    equal, shared = decision_agreement(offline, served, thresholds)
    return DecisionsComparison(
        n=n,
        rows=shared,
        rows_agreeing=equal,
        served_adaptive_seconds=served_seconds,
        served_adaptive_samples=sum(row.n for row in served),
        offline_seconds=offline_seconds,
        offline_engine_start_s=offline_engine_start_s,
        offline_samples=sum(row.n for row in offline),
        offline_generated_tokens=offline_generated_tokens,
        weak_seed=weak_seed,
        decisions_speedup_vs_offline=offline_seconds / served_seconds,
        decisions_agreement_vs_offline=equal / shared if shared else 0.0,
    )


@dataclass(frozen=True)
class _Job:
    problem: Problem
    fraction: float
    prefix_tokens: int
    cot_num_tokens: int
    prompt_ids: list[int]
    new_tokens: int


def _jobs(codec: Any, problems: Sequence[Problem], strong: dict[str, StrongCot], max_tokens: int) -> list[_Job]:
    """Every (problem, fraction) weak prompt as the weak replica builds it (``ReceiverServer.complete``)."""
    jobs = []
    for problem in problems:
        cot = strong.get(problem.id)
        if cot is None:
            continue
        for prefix in cot.prefixes:
            prompt_ids, prefix_tokens = codec.receiver_prompt_tokens(problem.problem, prefix.text, prefix.token_ids)
            # The budget covers the whole reasoning, prefix included, as the service's does.
            jobs.append(
                _Job(
                    problem,
                    prefix.fraction,
                    prefix_tokens,
                    cot.cot_num_tokens,
                    prompt_ids,
                    max(1, max_tokens - prefix_tokens),
                )
            )
    return jobs


def _answer_text(codec: Any, tokenizer: Any, token_ids: Sequence[int], text: str) -> str:
    # As ReceiverServer grades a free completion: its final answer once it closed its reasoning
    # block, the whole completion otherwise.
    if not codec.format.has_reasoning_block:
        return text
    split = codec.split(token_ids)
    return str(tokenizer.decode(split.final_ids)) if split.closed else text


def offline_decision_rows(
    config: Any, problems: Sequence[Problem], strong: dict[str, StrongCot], n: int, weak: SamplingParams
) -> tuple[list[FractionResult], float, float, int]:
    """The offline script: its rows, its wall time, its engine's start time and the tokens it generated."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.inputs import TokensPrompt

    from benchmarks.offline import offline_llm, shut_down
    from cot_transfer.domain.answers import grade
    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
    from cot_transfer.serving.replicas.graders import service_grader
    from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format

    started = time.perf_counter()
    llm = offline_llm(config.weak.engine)
    engine_start_s = time.perf_counter() - started
    try:
        tokenizer = HuggingFaceTokenizer(llm.get_tokenizer())
        codec = ReasoningCodec(resolve_format(config.weak.reasoning_format), tokenizer)
        grader = service_grader(config.default_grader)
        # Warm-up on one prompt, so start-up work is not timed; its cache blocks are reset below.
        llm.generate([TokensPrompt(prompt_token_ids=[1, 2, 3])], VllmSamplingParams(max_tokens=2), use_tqdm=False)
        llm.reset_prefix_cache()
        started = time.perf_counter()
        jobs = _jobs(codec, problems, strong, weak.max_tokens)
        params = [
            VllmSamplingParams(
                n=n, temperature=weak.temperature, top_p=weak.top_p, max_tokens=job.new_tokens, seed=weak.seed
            )
            for job in jobs
        ]
        outputs = llm.generate([TokensPrompt(prompt_token_ids=job.prompt_ids) for job in jobs], params, use_tqdm=False)
        rows = []
        generated = 0
        for job, output in zip(jobs, outputs, strict=True):
            samples = sorted(output.outputs, key=lambda sample: sample.index)
            generated += sum(len(sample.token_ids) for sample in samples)
            correct = sum(
                grade(grader, _answer_text(codec, tokenizer, sample.token_ids, sample.text), job.problem.answer).correct
                for sample in samples
            )
            rows.append(
                FractionResult(
                    job.problem.id, job.fraction, job.prefix_tokens, job.cot_num_tokens, len(samples), correct
                )
            )
        seconds = time.perf_counter() - started
    finally:
        shut_down(llm)
    return rows, seconds, engine_start_s, generated


def decisions_phase(
    config: Any, problems: Sequence[Problem], served: ServedAdaptive, n: int, artifacts: Path
) -> DecisionsComparison:
    """The offline script on the served adaptive run's prefixes, then the comparison; both runs'
    rows go to ``artifacts``. The stack must be stopped."""
    from benchmarks.progress import timed

    (rows, seconds, engine_start_s, generated), _ = timed(
        f"offline LLM.generate at n={n} on every (problem, fraction), graded and decided",
        lambda: offline_decision_rows(config, problems, served.strong, n, served.weak),
    )
    write_rows(artifacts / "offline.jsonl", rows)
    write_rows(artifacts / "served_adaptive.jsonl", served.rows)
    return compare_decisions(
        served.rows, served.seconds, rows, seconds, engine_start_s, generated, n, served.weak.seed, Thresholds()
    )


def markdown(comparison: DecisionsComparison) -> str:
    return "\n".join(
        [
            f"| offline script, brute force at n = {comparison.n} | {comparison.offline_seconds:.1f} s"
            f" | {comparison.offline_samples} | engine start {comparison.offline_engine_start_s:.1f} s, not counted |",
            f"| served adaptive run, n_max = {comparison.n} | {comparison.served_adaptive_seconds:.1f} s"
            f" | {comparison.served_adaptive_samples} | stack already up |",
            f"| `decisions_speedup_vs_offline` | {comparison.decisions_speedup_vs_offline:.2f}x | | |",
            f"| `decisions_agreement_vs_offline` | {comparison.decisions_agreement_vs_offline:.3f}"
            f" ({comparison.rows_agreeing} of {comparison.rows} rows) | | |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.progress import timed
    from benchmarks.stack import ServedStack, prepare_config
    from benchmarks.workload import ARTIFACTS, DEFAULT_CONFIG, DEFAULT_PROBLEMS, STANDARD
    from cot_transfer.experiment.datasets import load_problems

    parser = argparse.ArgumentParser(prog="python -m benchmarks.decisions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-max", type=int, default=128, help="n_max of the adaptive run and n of the offline script")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS)
    parser.add_argument("--problems-count", type=int, default=STANDARD.num_problems)
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS / "decisions")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the comparison (default: under --artifacts)")
    args = parser.parse_args(argv)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    config_path, config = prepare_config(args.config, args.artifacts)
    problems = load_problems(args.problems)[: args.problems_count]
    strong, weak = config.strong.sampling.settings(), config.weak.sampling.settings()
    stack = ServedStack(config_path, args.artifacts / "serve.log", config.auth_token_env)

    async def served() -> ServedAdaptive:
        imported = await imported_problems(stack, problems, strong, weak)
        return await served_adaptive(stack, imported, STANDARD.fractions, args.n_max, strong, weak)

    try:
        timed("starting the served stack", stack.start)
        adaptive = asyncio.run(served())
    finally:
        timed("stopping the served stack", stack.stop)
    comparison = decisions_phase(config, problems, adaptive, args.n_max, args.artifacts)
    out = args.out or args.artifacts / "decisions.json"
    out.write_text(json.dumps({**comparison.keys(), "decisions": asdict(comparison)}, indent=2) + "\n")
    print(markdown(comparison))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
