"""Byte-level BPE tokenizer of the testbed models, with a Qwen3-style chat template.

The tokenizer is a Hugging Face ``tokenizers`` BPE over the GPT-2 byte alphabet, saved as
``tokenizer.json``. Its merge table is short and chosen, not trained, so what a cut can do is
deliberate and the file is the same on every machine:

* every digit is its own token (a pre-tokenizer isolates digits), so arithmetic is token-wise;
* ``×`` and ``△`` are one token each (two and three UTF-8 bytes merged);
* ``→`` (three bytes, ``E2 86 92``) is **two** tokens, ``E2 86`` and ``92``: a cut between them
  decodes to U+FFFD, so every CoT line holds a place where a byte-level cut splits a character,
  as happens with real byte-level tokenizers (Qwen3, GPT-OSS);
* everything else is bytes, plus a few merges for the ``\\boxed{`` and tangent phrases.

Turn markers are special tokens (``<|im_start|>``, ``<|im_end|>`` = EOS, ``<|endoftext|>`` = pad),
and ``<think>``/``</think>`` are single added tokens that decoding keeps, as in Qwen3, so
vLLM's ``qwen3`` reasoning parser finds them by id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
EOS_TOKEN = IM_END
THINK_START = "<think>"
THINK_END = "</think>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)
THINK_TOKENS = (THINK_START, THINK_END)

# Strings whose bytes are merged, left to right, into one token each (see the module doc).
MERGED_STRINGS = ("×", "△", "\n\n\\boxed{", ", no: ", "last step ")
# The arrow is merged into these two pieces only.
SPLIT_ARROW = ("\xe2\x86", "\x92")

# 256 byte symbols, the merged tokens, then the added tokens; rounded up for the model.
MODEL_MAX_LENGTH = 512

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{{- '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- raise_exception('the testbed models know only user and assistant messages') }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    # Qwen3's thinking switch: with thinking off the template writes an empty think block.
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


@cache
def byte_symbols() -> tuple[str, ...]:
    """GPT-2's printable stand-in for each byte value (what ``ByteLevel`` uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, int] = {byte: byte for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = 256 + extra
            extra += 1
    return tuple(chr(symbols[byte]) for byte in range(256))


def _symbols_of(text: str, encoding: str = "utf-8") -> list[str]:
    raw = text.encode(encoding)
    return [byte_symbols()[byte] for byte in raw]


def merges() -> list[tuple[str, str]]:
    """The merge table: each merged string is built left to right from its bytes."""
    table: list[tuple[str, str]] = []
    pieces = [_symbols_of(text) for text in MERGED_STRINGS]
    pieces += [_symbols_of(piece, "latin-1") for piece in SPLIT_ARROW]
    for symbols in pieces:
        left = symbols[0]
        for right in symbols[1:]:
            if (left, right) not in table:
                table.append((left, right))
            left += right
    return table


def bpe_vocab() -> dict[str, int]:
    vocab = {symbol: index for index, symbol in enumerate(byte_symbols())}
    for left, right in merges():
        vocab.setdefault(left + right, len(vocab))
    return vocab


def added_token_ids() -> dict[str, int]:
    first = len(bpe_vocab())
    return {token: first + index for index, token in enumerate((*SPECIAL_TOKENS, *THINK_TOKENS))}


PAD_ID = added_token_ids()[PAD_TOKEN]
IM_START_ID = added_token_ids()[IM_START]
EOS_ID = added_token_ids()[IM_END]
THINK_START_ID = added_token_ids()[THINK_START]
THINK_END_ID = added_token_ids()[THINK_END]
# A multiple of 8 keeps the embedding matrix friendly to vectorised kernels.
VOCAB_SIZE = -(-(len(bpe_vocab()) + len(added_token_ids())) // 8) * 8


def build_tokenizer() -> Tokenizer:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab=bpe_vocab(), merges=merges(), fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[0-9]"), behavior="isolated"),
            # No GPT-2 regex: merges may cross word boundaries, only digits are kept apart.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    if tokenizer.token_to_id(THINK_END) != THINK_END_ID:
        raise AssertionError("added token ids moved; the module constants no longer match tokenizer.json")
    return tokenizer


@cache
def _shared() -> Tokenizer:
    return build_tokenizer()


def render_prompt(problem: str) -> str:
    """What the chat template renders for one user message (with the generation prompt)."""
    return f"{IM_START}user\n{problem}{IM_END}\n{IM_START}assistant\n"


def encode_text(text: str) -> list[int]:
    """Ids of text; special-token markup in it is recognised, as the saved tokenizer does."""
    return list(_shared().encode(text, add_special_tokens=False).ids)


def encode_prompt(problem: str) -> list[int]:
    return encode_text(render_prompt(problem))


def decode_ids(ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    return str(_shared().decode(list(ids), skip_special_tokens=skip_special_tokens))


def tokenizer_config() -> dict[str, object]:
    added = {
        str(token_id): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": token in SPECIAL_TOKENS,
        }
        for token, token_id in added_token_ids().items()
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }


def save_tokenizer(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(build_tokenizer().to_str(pretty=True) + "\n", encoding="utf-8")
    config = json.dumps(tokenizer_config(), indent=2, ensure_ascii=False)
    (directory / "tokenizer_config.json").write_text(config + "\n", encoding="utf-8")
    special = {"eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
