"""The receiver's rendered head is built once per problem and gives the same prompt as building it anew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format
from tests.reasoning_models import load_tokenizer, save_model_folder


class CountingTokenizer:
    """The real tokenizer, counting how often a chat template is rendered."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.renders = 0

    def render_problem(self, *args: Any, **kwargs: Any) -> Any:
        self.renders += 1
        return self._inner.render_problem(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("preset", ["plain", "qwen3"])
def test_a_problems_head_is_rendered_once_and_prompts_are_unchanged(preset: str, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(save_model_folder(tmp_path / preset, preset))
    counting = CountingTokenizer(tokenizer)
    cached = ReasoningCodec(resolve_format(preset), counting)
    prompts = [cached.receiver_prompt_tokens("What is 2+3?", prefix) for prefix in ("", "First", "First, 2")]
    assert counting.renders == 1
    cached.receiver_prompt_tokens("What is 7*6?", "")
    assert counting.renders == 2
    fresh = [
        ReasoningCodec(resolve_format(preset), tokenizer).receiver_prompt_tokens("What is 2+3?", prefix)
        for prefix in ("", "First", "First, 2")
    ]
    assert prompts == fresh
