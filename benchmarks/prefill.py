"""Prefill accounting: the tokens the weak engine computes against what its prefix cache allows.

vLLM's prefix cache shares KV blocks of ``block_size`` tokens: a prompt can reuse only whole
blocks that an earlier request computed (a block is cached as soon as it is scheduled), and
it always computes at least its last token, for the logits: the reused part of a prompt of
``L`` tokens is at most ``block_size * floor((L - 1) / block_size)`` tokens.

The lower bound counts the prompt tokens that must be computed in the best order, per
problem the longest prompt first:

* the longest prompt of a problem: every token not in a full block shared with a prompt that
  ran before it (in practice every token: other problems' prompts differ from the start);
* every other prompt: only its tokens past the last full block it shares with a prompt that
  ran before it (``L - B * floor(min(shared, L - 1) / B)``, ``shared`` its longest common
  prefix with any earlier prompt);
* a request for ``n`` samples runs as ``n`` requests with the same prompt (vLLM fans them
  out), so samples 2..n each compute ``L - B * floor((L - 1) / B)``: the partial last block
  that no request can share.

``n = 1`` gives the bound over distinct prompts. Nothing here imports vLLM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def reusable_tokens(prompt_length: int, shared_tokens: int, block_size: int) -> int:
    """Tokens of a prompt that full cached blocks can supply, given ``shared_tokens`` in common."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if prompt_length <= 0:
        return 0
    return block_size * (min(shared_tokens, prompt_length - 1) // block_size)


def computed_tokens(prompt_length: int, shared_tokens: int, block_size: int) -> int:
    """Tokens of a prompt that must be computed when ``shared_tokens`` ran before."""
    return prompt_length - reusable_tokens(prompt_length, shared_tokens, block_size)


@dataclass(frozen=True)
class PrefillBound:
    block_size: int
    samples_per_prompt: int
    prompts: int
    prompt_tokens: int
    """All prompt tokens, every sample counted (what the engine is asked to prefill)."""
    lower_bound: int
    """Prompt tokens that must be computed (the bound in the module docstring)."""


def longest_first(prompts: Sequence[Sequence[int]]) -> list[Sequence[int]]:
    return sorted(prompts, key=len, reverse=True)


def prefill_lower_bound(
    problems: Iterable[Sequence[Sequence[int]]], block_size: int, samples_per_prompt: int = 1
) -> PrefillBound:
    """The lower bound for ``problems``, each a list of the weak prompts (token ids) of one problem.

    The prefix cache is modelled as vLLM keeps it: a set of full-block prefixes (a block's
    hash covers every token before it), filled with the full blocks of each prompt that ran.
    """
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    cached: set[tuple[int, ...]] = set()
    total = 0
    bound = 0
    count = 0
    for prompts in problems:
        for prompt in longest_first(prompts):
            tokens = tuple(prompt)
            length = len(tokens)
            shared_blocks = 0
            while (shared_blocks + 1) * block_size <= length and tokens[: (shared_blocks + 1) * block_size] in cached:
                shared_blocks += 1
            first = computed_tokens(length, shared_blocks * block_size, block_size)
            repeat = computed_tokens(length, length, block_size)
            bound += first + (samples_per_prompt - 1) * repeat
            total += samples_per_prompt * length
            count += 1
            cached.update(tokens[: index * block_size] for index in range(1, length // block_size + 1))
    return PrefillBound(
        block_size=block_size,
        samples_per_prompt=samples_per_prompt,
        prompts=count,
        prompt_tokens=total,
        lower_bound=bound,
    )
