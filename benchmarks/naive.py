"""The naive baseline: Hugging Face transformers ``generate``, one prefix after another.

Same models (``AutoModelForCausalLM`` from the served model folders), same prompts (the weak
model's chat template of the problem followed by the strong CoT prefix, encoded by the same
tokenizer code as the service), same samples (``num_return_sequences=n``, ``do_sample``,
temperature, top-p, no top-k) and the same budget (``max_tokens`` minus the prefix's weak
tokens, at least 1). Completions are graded as the service grades them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.progress import log, timed
from cot_transfer.domain.answers import grade
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.replicas.graders import service_grader


@dataclass(frozen=True)
class WeakJob:
    """One (problem, fraction) row: the weak model completes ``prefix`` n times."""

    problem_id: str
    problem: str
    answer: str
    fraction: float
    prefix: str


@dataclass
class NaiveTiming:
    rows: int = 0
    samples: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    correct: int = 0
    per_row_s: list[float] = field(default_factory=list)
    threads: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / self.samples if self.samples else 0.0


def weak_budget(prefix_tokens: int, max_tokens: int) -> int:
    """New tokens the weak model may add: the budget counts the prefix; at least one is left."""
    return max(1, max_tokens - prefix_tokens)


class HuggingFaceModel:
    """A causal LM and its tokenizer through transformers, prompts encoded as the service does."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer

        self._torch = torch
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype, torch.float32
        )
        self.hf_tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer = HuggingFaceTokenizer(self.hf_tokenizer)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        self.model = model.to(device).eval()
        self.device = device
        self.eos_token_id = self.hf_tokenizer.eos_token_id
        self.pad_token_id = (
            self.hf_tokenizer.pad_token_id if self.hf_tokenizer.pad_token_id is not None else self.eos_token_id
        )

    def prompt_ids(self, problem: str, prefix: str = "") -> list[int]:
        return self.tokenizer.encode(self.tokenizer.render_problem(problem) + prefix)

    def sample(self, prompt_ids: Sequence[int], n: int, sampling: SamplingParams, new_tokens: int) -> list[list[int]]:
        """``n`` sampled continuations (token ids, end of sequence and padding removed)."""
        torch = self._torch
        inputs = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            output = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=new_tokens,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
            )
        continuations = []
        for row in output[:, inputs.shape[1] :].tolist():
            tokens = []
            for token in row:
                if token == self.eos_token_id:
                    break
                tokens.append(token)
            continuations.append(tokens)
        return continuations


def best_thread_count(model: HuggingFaceModel, problem: str, n: int, sampling: SamplingParams) -> dict[str, Any]:
    """Sets torch's CPU threads to whichever of 1 or all cores generates faster here, and says so.

    On a shared 2-core machine, OpenMP threads that spin while another process holds a core
    can slow ``generate`` down by orders of magnitude; the baseline gets its best setting.
    """
    import os

    torch = model._torch
    if model.device != "cpu":
        return {"threads": torch.get_num_threads(), "tried": {}}
    prompt = model.prompt_ids(problem)
    tried: dict[int, float] = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        model.sample(prompt, n, sampling, 8)
        started = time.perf_counter()
        for _ in range(2):
            model.sample(prompt, n, sampling, 32)
        tried[threads] = time.perf_counter() - started
    best = min(tried, key=lambda threads: tried[threads])
    torch.set_num_threads(best)
    return {"threads": best, "tried": {str(threads): seconds for threads, seconds in tried.items()}}


def time_strong(model: HuggingFaceModel, problems: Sequence[str], sampling: SamplingParams) -> NaiveTiming:
    """One CoT per problem, as the strong model writes it (the text is not used further)."""
    timing = NaiveTiming()
    for problem in problems:
        started = time.perf_counter()
        [cot] = model.sample(model.prompt_ids(problem), 1, sampling, sampling.max_tokens)
        model.tokenizer.decode(cot)
        elapsed = time.perf_counter() - started
        timing.rows += 1
        timing.samples += 1
        timing.generated_tokens += len(cot)
        timing.seconds += elapsed
        timing.per_row_s.append(elapsed)
    return timing


def time_weak(
    model: HuggingFaceModel, jobs: Sequence[WeakJob], n: int, sampling: SamplingParams, grader_name: str = "exact"
) -> NaiveTiming:
    """Every job one after another: encode, ``generate`` n samples, decode, grade."""
    grader = service_grader(grader_name)
    timing = NaiveTiming()
    for job in jobs:
        started = time.perf_counter()
        prompt = model.prompt_ids(job.problem, job.prefix)
        prefix_tokens = len(model.tokenizer.encode(job.prefix)) if job.prefix else 0
        continuations = model.sample(prompt, n, sampling, weak_budget(prefix_tokens, sampling.max_tokens))
        for tokens in continuations:
            text = model.tokenizer.decode(tokens)
            timing.correct += int(grade(grader, job.prefix + text, job.answer).correct)
            timing.generated_tokens += len(tokens)
        elapsed = time.perf_counter() - started
        timing.rows += 1
        timing.samples += len(continuations)
        timing.seconds += elapsed
        timing.per_row_s.append(elapsed)
    return timing


def spread_subset(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over ``items`` (first and last included)."""
    if count >= len(items):
        return list(items)
    if count <= 0:
        return []
    if count == 1:
        return [items[len(items) // 2]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(index * step)] for index in range(count)]


def run_naive(
    config: ServingConfig, device: str, problems: Sequence[Problem], jobs: Sequence[WeakJob], n: int
) -> tuple[NaiveTiming, NaiveTiming]:
    """The naive phase: the weak jobs and one strong CoT per problem, timed (weak, strong)."""
    import torch

    torch.manual_seed(0)
    torch_device = "cuda" if device == "cuda" else "cpu"
    strong_model = HuggingFaceModel(config.strong.engine.model, torch_device, config.strong.engine.dtype)
    weak_model = HuggingFaceModel(config.weak.engine.model, torch_device, config.weak.engine.dtype)
    # Untimed calls first: the first generate pays for lazy initialisation, and the thread count
    # that suits this machine now is chosen for the baseline.
    threads = best_thread_count(weak_model, problems[0].problem, n, config.weak.sampling.settings())
    log(f"naive baseline: torch threads {threads}")
    strong_model.sample(strong_model.prompt_ids(problems[0].problem), 1, config.strong.sampling.settings(), 4)
    strong, _ = timed(
        f"naive strong CoTs ({len(problems)} problems)",
        lambda: time_strong(strong_model, [problem.problem for problem in problems], config.strong.sampling.settings()),
    )
    weak, _ = timed(
        f"naive weak completions ({len(jobs)} rows x n={n})",
        lambda: time_weak(weak_model, jobs, n, config.weak.sampling.settings(), config.default_grader),
    )
    weak.threads = threads
    return weak, strong
