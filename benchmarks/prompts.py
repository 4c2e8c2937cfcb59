"""The weak prompts as the weak server builds them, and the engine settings vLLM resolves: what the
prefill accounting (benchmarks/prefill.py) and the offline comparison are computed on."""

from __future__ import annotations

from collections.abc import Sequence

from cot_transfer.domain.requests import Problem, StrongCot
from cot_transfer.engine.config import EngineConfig
from cot_transfer.serving.common.serving_config import ModelDeploymentConfig


def weak_prompt_groups(
    weak: ModelDeploymentConfig, problems: Sequence[Problem], strong: dict[str, StrongCot]
) -> tuple[list[list[list[int]]], list[list[int]]]:
    """The weak prompts (token ids) per problem and the prefix lengths, built by the weak server's
    own codec: its chat template, its reasoning block opened (Qwen3's ``<think>\n``, ...), the
    strong model's prefix tokens where they mean the prefix in its tokenizer."""
    from transformers import AutoTokenizer

    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
    from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format

    folder = weak.engine.tokenizer_folder or weak.engine.model
    codec = ReasoningCodec(
        resolve_format(weak.reasoning_format), HuggingFaceTokenizer(AutoTokenizer.from_pretrained(folder))
    )
    groups = []
    prefix_lengths = []
    for problem in problems:
        prompts = [
            codec.receiver_prompt_tokens(problem.problem, prefix.text, prefix.token_ids)
            for prefix in strong[problem.id].prefixes
        ]
        groups.append([ids for ids, _ in prompts])
        prefix_lengths.append([length for _, length in prompts])
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
