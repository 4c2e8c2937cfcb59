"""`cot-transfer render`: the exact prompt a served model would receive, from its tokenizer alone.

It loads the model folder's tokenizer and chat template (no Ray, no engine), so a researcher
can check a reasoning format before spending GPU hours on a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    num_tokens: int
    reasoning_format: str


def render_prompt(
    config_path: Path, model: Literal["strong", "weak"], problem: str, prefix: str | None
) -> RenderedPrompt:
    """The prompt ``model`` gets for ``problem`` (and a received ``prefix``), built the way the
    served model builds it: the same format, the same parts tokenised the same way."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        from cot_transfer.cli.run import UsageError

        raise UsageError("cot-transfer render needs transformers: pip install 'cot-transfer[render]'") from None

    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
    from cot_transfer.serving.common.serving_config import ServingConfig
    from cot_transfer.serving.replicas.reasoning_formats import ReasoningCodec, resolve_format

    config = ServingConfig.from_yaml(config_path)
    deployment = config.strong if model == "strong" else config.weak
    reasoning_format = resolve_format(deployment.reasoning_format)
    folder = deployment.engine.tokenizer_folder
    if folder is None:
        from cot_transfer.cli.run import UsageError

        raise UsageError(
            f"{model}.engine.endpoint.tokenizer is 'server': render needs the model's tokenizer as a local folder"
        )
    tokenizer = HuggingFaceTokenizer(AutoTokenizer.from_pretrained(folder))
    codec = ReasoningCodec(reasoning_format, tokenizer)
    if prefix is None:
        text = reasoning_format.prompt_text(tokenizer, problem, None)
        num_tokens = len(codec.strong_prompt_tokens(problem))
    else:
        text = reasoning_format.prompt_text(tokenizer, problem, prefix)
        num_tokens = len(codec.receiver_prompt_tokens(problem, prefix)[0])
    return RenderedPrompt(text, num_tokens, reasoning_format.name)


def render_command(config_path: Path, model: Literal["strong", "weak"], problem: str, prefix: str | None) -> int:
    rendered = render_prompt(config_path, model, problem, prefix)
    print(rendered.text)
    print(f"--- {rendered.num_tokens} tokens ({model} model, reasoning format {rendered.reasoning_format})")
    return 0
