"""Clean cuts: a prefix cut from byte-level tokens never ends in half a character."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from cot_transfer.domain.reasoning import REPLACEMENT_CHARACTER, clean_prefix, split_think_block
from tests.reasoning_models import byte_level_tokenizer

# Multi-byte characters of 2, 3 and 4 bytes in UTF-8, mixed with ASCII.
ALPHABET = st.sampled_from(list("ab 1+=×→≤∑é你好😀🧮\n"))


@lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    # Trained on text with few of these characters: most of them split across byte tokens.
    return byte_level_tokenizer(vocab_size=300)


def _decode(ids: Sequence[int]) -> str:
    return str(_tokenizer().decode(list(ids)))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=ALPHABET, min_size=1, max_size=40))
def test_no_cut_at_any_token_position_ends_in_half_a_character(text: str) -> None:
    ids = _tokenizer().encode(text).ids
    assert _decode(ids) == text
    for position in range(len(ids) + 1):
        kept, prefix = clean_prefix(ids, position, _decode)
        assert REPLACEMENT_CHARACTER not in prefix
        assert kept <= position
        assert prefix == _decode(ids[:kept])
        assert text.startswith(prefix)


def test_a_split_character_is_backed_off_to_the_last_complete_one() -> None:
    ids = _tokenizer().encode("a😀").ids
    # The emoji is 4 bytes; a cut inside it must fall back to "a".
    assert len(ids) > 2
    assert REPLACEMENT_CHARACTER in _decode(ids[:2])
    assert clean_prefix(ids, 2, _decode) == (1, "a")
    assert clean_prefix(ids, len(ids), _decode) == (len(ids), "a😀")


def test_a_cut_of_nothing_is_empty() -> None:
    assert clean_prefix([], 0, _decode) == (0, "")


def test_the_think_block_splits_with_or_without_its_opening_marker() -> None:
    assert split_think_block([1, 5, 6, 2, 7], [1], [2]).reasoning_ids == (5, 6)
    split = split_think_block([5, 6, 2, 7, 8], [1], [2])
    assert (split.reasoning_ids, split.final_ids, split.closed) == ((5, 6), (7, 8), True)
    assert split_think_block([5, 6], [1], [2]).closed is False
