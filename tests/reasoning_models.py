"""Tiny byte-level BPE tokenizers with the chat templates of each reasoning format, built in
the test (nothing is downloaded), and an engine that answers with a scripted text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from cot_transfer.engine.base import GenerationOutput, GenerationRequest, SampleOutput
from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer
from tests.fakes import RecordingEngine

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|start|>", "<|channel|>", "<|message|>", "<|end|>"]
HARMONY_STOPS = ["<|return|>", "<|call|>"]
# Qwen3 and DeepSeek-R1 keep the think tags as added tokens that are not special: they stay in
# decoded text.
THINK = ["<think>", "</think>"]

_CHAT = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
TEMPLATES = {
    "plain": _CHAT + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    # Qwen3's thinking switch: off, the template writes an empty, closed think block.
    "qwen3": _CHAT + "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}",
    # DeepSeek-R1's generation prompt opens the think block itself.
    "deepseek_r1": _CHAT + "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
    "gpt_oss": "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}",
}
EOS = {"plain": "<|im_end|>", "qwen3": "<|im_end|>", "deepseek_r1": "<|im_end|>", "gpt_oss": "<|return|>"}

CORPUS = [
    "The product 3×4 → 12, so the answer is \\boxed{12}.",
    "First compute 7 × 8 = 56; then 56 → 5+6 = 11. Café, naïve, 你好, ∑ and ∫ appear too.",
    "analysis final assistant user reasoning think step answer",
]


def byte_level_tokenizer(vocab_size: int = 420) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL, *HARMONY_STOPS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    return tokenizer


def save_model_folder(folder: Path, preset: str) -> Path:
    """A model folder with only the tokenizer: tokenizer.json plus the chat template."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_tokenizer(), eos_token=EOS[preset], pad_token="<|endoftext|>"
    )
    fast.add_tokens(THINK)
    fast.chat_template = TEMPLATES[preset]
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def load_tokenizer(folder: Path) -> HuggingFaceTokenizer:
    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(folder)))


class TextEngine(RecordingEngine):
    """Answers every sample with ``output`` tokenised by the model's tokenizer, cut at the budget."""

    def __init__(self, tokenizer: HuggingFaceTokenizer, output: str, max_model_len: int = 4096) -> None:
        super().__init__(tokenizer, max_model_len)
        self.output = output

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        self.requests.append(request)
        ids = self._tokenizer.encode(self.output)
        finish = "stop" if len(ids) <= request.sampling.max_tokens else "length"
        ids = ids[: request.sampling.max_tokens]
        text = self._tokenizer.decode(ids)
        yield GenerationOutput(
            request_id, [SampleOutput(index, text, ids, finish) for index in range(request.n)], finished=True
        )
