"""The weak prompts as the weak server builds them, and the engine settings vLLM resolves: what the
prefill accounting (benchmarks/prefill.py) and the offline comparison are computed on."""

from __future__ import annotations

from collections.abc import Sequence

from cot_transfer.domain.requests import Problem, StrongCot
from cot_transfer.engine.config import EngineConfig


def weak_prompt_groups(
    tokenizer_path: str, problems: Sequence[Problem], strong: dict[str, StrongCot]
) -> tuple[list[list[list[int]]], list[list[int]]]:
    """The weak prompts (token ids) per problem as the weak server builds them, and the prefix lengths."""
    from transformers import AutoTokenizer

    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer

    tokenizer = HuggingFaceTokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    groups = []
    prefix_lengths = []
    for problem in problems:
        rendered = tokenizer.render_problem(problem.problem)
        prefixes = strong[problem.id].prefixes
        groups.append([tokenizer.encode(rendered + prefix.text) for prefix in prefixes])
        prefix_lengths.append([len(tokenizer.encode(prefix.text)) if prefix.text else 0 for prefix in prefixes])
    return groups, prefix_lengths


def engine_settings(config: EngineConfig) -> dict[str, int]:
    """Block size and batch limits vLLM resolves for an engine config (the platform's defaults
    included), from the same arguments ``VLLMEngine`` starts the engine with; no engine starts."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from cot_transfer.engine.vllm_engine import set_cpu_kv_cache_space, vllm_engine_arguments

    set_cpu_kv_cache_space(config)
    args = AsyncEngineArgs(**vllm_engine_arguments(config))
    resolved = args.create_engine_config()
    return {
        "block_size": int(resolved.cache_config.block_size),
        "max_num_seqs": int(resolved.scheduler_config.max_num_seqs),
        "max_num_batched_tokens": int(resolved.scheduler_config.max_num_batched_tokens),
    }
