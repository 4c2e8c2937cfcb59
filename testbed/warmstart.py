"""Warm start: begin a testbed model from another Llama checkpoint with a different tokenizer.

Every weight but the (tied) embedding matrix is copied as is. An embedding row of the new
vocabulary is copied from the source token with the same text, or else from the source token
``ALIASES`` names for it (the v1 testbed's character tokens stand in for the v2 symbols that
play their part: ``*`` for ``×``, ``+`` for ``△``, ``,`` and a space for the two halves of
``→``); any other row keeps its fresh initialisation. The routine skills of the source
(digit arithmetic, restating a chain) then carry over, and training only has to teach the new
format and the insight, which takes a fraction of the steps of a run from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from testbed import tokenizer as vocab

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

ALIASES: dict[str, str] = {
    "×": "*",
    "△": "+",
    "<0xE2><0x86>": ",",
    "<0x92>": " ",
    # The lone byte 0xD7 (× in latin-1), never seen in training: it starts from * as in the
    # shipped run, whose first round read undecodable bytes as latin-1.
    "<0xD7>": "*",
    vocab.IM_START: "<s>",
    vocab.IM_END: "</s>",
    vocab.PAD_TOKEN: "<pad>",
}


def _byte_level_text(token: str) -> str:
    """The text a byte-level BPE token stands for; ``<0xNN>`` per byte for a partial character."""
    symbol_to_byte = {symbol: byte for byte, symbol in enumerate(vocab.byte_symbols())}
    raw = bytes(symbol_to_byte[symbol] for symbol in token)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"<0x{byte:02X}>" for byte in raw)


def source_vocab(directory: Path) -> dict[str, int]:
    """Token text -> id of a saved tokenizer (its model vocabulary and added tokens)."""
    data = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    model_vocab: dict[str, int] = data["model"]["vocab"]
    byte_level = data["model"]["type"] == "BPE"
    tokens = {(_byte_level_text(token) if byte_level else token): index for token, index in model_vocab.items()}
    tokens.update({entry["content"]: entry["id"] for entry in data.get("added_tokens", [])})
    return tokens


def target_texts() -> dict[int, str]:
    """v2 token id -> the text it stands for."""
    texts = {token_id: _byte_level_text(token) for token, token_id in vocab.bpe_vocab().items()}
    for token, token_id in vocab.added_token_ids().items():
        texts[token_id] = token
    return texts


def transplant(model: LlamaForCausalLM, source_directory: Path) -> list[str]:
    """Copies ``source_directory``'s weights into ``model``; returns the texts whose rows were mapped."""
    import torch
    from transformers import AutoModelForCausalLM

    source = AutoModelForCausalLM.from_pretrained(str(source_directory), dtype=torch.float32)
    source_state = source.state_dict()
    target_state = model.state_dict()
    embedding_key = "model.embed_tokens.weight"
    for key, value in source_state.items():
        if key == embedding_key or key == "lm_head.weight":
            continue
        if key not in target_state or target_state[key].shape != value.shape:
            raise ValueError(f"{source_directory} does not fit the recipe: {key} {tuple(value.shape)}")
        target_state[key].copy_(value)
    source_tokens = source_vocab(source_directory)
    source_rows = source_state[embedding_key]
    mapped: list[str] = []
    with torch.no_grad():
        for token_id, text in sorted(target_texts().items()):
            # The same token when the source has it, else the v1 stand-in.
            name = text if text in source_tokens else ALIASES.get(text, text)
            if name in source_tokens:
                target_state[embedding_key][token_id].copy_(source_rows[source_tokens[name]])
                mapped.append(text)
    model.load_state_dict(target_state)
    return mapped
