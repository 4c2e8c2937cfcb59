"""vLLM's offline ``LLM.generate`` on the weak prompts: the ceiling the served weak model is held to.

Runs in the benchmark process after the served stack is stopped (on a GPU both cannot hold the
memory at once). ``LLM`` starts its engine in a spawned process, so this module must only be
used under ``if __name__ == "__main__":`` (``python -m benchmarks.bench`` is).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.config import EngineConfig


def offline_llm(config: EngineConfig) -> Any:
    from vllm import LLM

    from cot_transfer.engine.vllm_engine import set_cpu_kv_cache_space, vllm_engine_arguments

    set_cpu_kv_cache_space(config)
    return LLM(**vllm_engine_arguments(config))


def shut_down(llm: Any) -> None:
    """Stops the engine's process now, so the next phase gets its memory and cores."""
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None and hasattr(engine_core, "shutdown"):
        engine_core.shutdown()
    del llm
    gc.collect()


def offline_completions_per_s(
    config: EngineConfig,
    prompts: Sequence[Sequence[int]],
    new_tokens: Sequence[int],
    n: int,
    sampling: SamplingParams,
) -> dict[str, Any]:
    """Weak completions per second of one ``LLM.generate`` call over every prompt (n samples each)."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.inputs import TokensPrompt

    llm = offline_llm(config)
    try:
        params = [
            VllmSamplingParams(n=n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=tokens)
            for tokens in new_tokens
        ]
        inputs = [TokensPrompt(prompt_token_ids=list(prompt)) for prompt in prompts]
        # Warm-up on one prompt, so start-up work is not timed; its cache blocks are reset below.
        llm.generate(inputs[:1], params[:1], use_tqdm=False)
        llm.reset_prefix_cache()
        started = time.perf_counter()
        outputs = llm.generate(inputs, params, use_tqdm=False)
        seconds = time.perf_counter() - started
        completions = sum(len(output.outputs) for output in outputs)
        generated = sum(len(sample.token_ids) for output in outputs for sample in output.outputs)
    finally:
        shut_down(llm)
    return {
        "prompts": len(prompts),
        "completions": completions,
        "generated_tokens": generated,
        "seconds": seconds,
        "completions_per_s": completions / seconds if seconds else 0.0,
    }
