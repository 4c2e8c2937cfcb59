"""Character-level tokenizer of the testbed models, saved as a Hugging Face fast tokenizer.

Every printable ASCII character plus newline and tab is one token, so any prompt encodes
without unknown tokens and any cut of a token sequence decodes to text that re-encodes to
the same tokens (the weak model's prompt is built from such a cut).

The chat template puts the BOS token into the prompt text itself and the tokenizer adds no
special tokens of its own, so the chat, completion and transformers paths all encode a
prompt to the same ids whether or not they ask for special tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIAL_TOKENS))

CHARACTERS = ("\n", "\t", *(chr(code) for code in range(32, 127)))
VOCAB: dict[str, int] = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}
# A multiple of 8 keeps the embedding matrix friendly to vectorised kernels.
VOCAB_SIZE = -(-len(VOCAB) // 8) * 8

# The user's message is the problem; the model writes the CoT and "Answer: ..." after it.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('the testbed models know only user and assistant messages') }}"
    "{% endif %}"
    "{% endfor %}"
)
MODEL_MAX_LENGTH = 512


def render_prompt(problem: str) -> str:
    """What the chat template renders for one user message (with the generation prompt)."""
    return f"{BOS_TOKEN}{problem}\n"


def encode_text(text: str) -> list[int]:
    """Ids of plain text (no special-token markup); the same ids the saved tokenizer gives."""
    try:
        return [VOCAB[char] for char in text]
    except KeyError as error:
        raise ValueError(f"character {error.args[0]!r} is outside the testbed vocabulary") from error


def encode_prompt(problem: str) -> list[int]:
    return [BOS_ID, *encode_text(f"{problem}\n")]


def decode_ids(ids: Sequence[int]) -> str:
    tokens = list(VOCAB)
    return "".join(tokens[index] for index in ids if index >= len(SPECIAL_TOKENS))


def build_tokenizer_json() -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token=UNK_TOKEN))
    # Each character is its own pre-token; [\s\S] also matches newlines, which "." would not.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return str(tokenizer.to_str(pretty=True))


def tokenizer_config() -> dict[str, object]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": UNK_TOKEN,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }


def save_tokenizer(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(build_tokenizer_json() + "\n", encoding="utf-8")
    config = json.dumps(tokenizer_config(), indent=2)
    (directory / "tokenizer_config.json").write_text(config + "\n", encoding="utf-8")
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN, "unk_token": UNK_TOKEN}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
