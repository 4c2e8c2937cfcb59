"""The testbed's byte-level BPE tokenizer as Hugging Face loads it matches the ids the models were trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import tasks, tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_tokenizer(directory)
    return transformers.AutoTokenizer.from_pretrained(str(directory))


def test_special_tokens_are_set(hf_tokenizer: object) -> None:
    assert hf_tokenizer.eos_token == "<|im_end|>"  # type: ignore[attr-defined]
    assert hf_tokenizer.eos_token_id == tokenizer.EOS_ID  # type: ignore[attr-defined]
    assert hf_tokenizer.pad_token_id == tokenizer.PAD_ID  # type: ignore[attr-defined]
    assert hf_tokenizer.bos_token is None  # type: ignore[attr-defined]
    vocab = hf_tokenizer.get_vocab()  # type: ignore[attr-defined]
    assert vocab["<think>"] == tokenizer.THINK_START_ID and vocab["</think>"] == tokenizer.THINK_END_ID
    assert len(vocab) <= tokenizer.VOCAB_SIZE


def test_think_markers_survive_decoding_and_turn_markers_do_not(hf_tokenizer: object) -> None:
    ids = tokenizer.encode_text("<|im_start|>assistant\n<think>\n1+2=3\n</think>\n\n\\boxed{3}<|im_end|>")
    assert tokenizer.THINK_START_ID in ids and tokenizer.EOS_ID in ids
    text = hf_tokenizer.decode(ids, skip_special_tokens=True)  # type: ignore[attr-defined]
    assert text == "assistant\n<think>\n1+2=3\n</think>\n\n\\boxed{3}"


def test_chat_template_renders_the_training_prompt(hf_tokenizer: object) -> None:
    messages = [{"role": "user", "content": "3+7△5×2"}]
    prompt = hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tokenize=False, add_generation_prompt=True
    )
    expected = "<|im_start|>user\n3+7△5×2<|im_end|>\n<|im_start|>assistant\n"
    assert prompt == tokenizer.render_prompt("3+7△5×2") == expected
    ids = hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert list(ids) == tokenizer.encode_prompt("3+7△5×2")


def test_chat_template_honours_the_thinking_switch(hf_tokenizer: object) -> None:
    prompt = hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": "1+2"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert prompt == tokenizer.render_prompt("1+2") + "<think>\n\n</think>\n\n"


def test_chat_template_refuses_unknown_roles(hf_tokenizer: object) -> None:
    with pytest.raises(Exception, match="user and assistant"):
        hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "system", "content": "x"}], tokenize=False, add_generation_prompt=True
        )


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_prompt_and_completion_encode_to_training_ids(hf_tokenizer: object, add_special_tokens: bool) -> None:
    for problem in tasks.generate_problems(10, 8, seed=2, lucky_every=3):
        text = tokenizer.render_prompt(problem.text) + problem.completion()
        ids = hf_tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]  # type: ignore[operator]
        assert ids == tokenizer.encode_prompt(problem.text) + tokenizer.encode_text(problem.completion())


def test_digits_are_single_tokens_and_the_arrow_is_split_in_two() -> None:
    assert [len(tokenizer.encode_text(str(digit))) for digit in range(10)] == [1] * 10
    assert len(tokenizer.encode_text("×")) == 1 and len(tokenizer.encode_text("△")) == 1
    arrow = tokenizer.encode_text("→")
    assert len(arrow) == 2
    assert tokenizer.decode_ids(arrow[:1]) == "\ufffd"


def test_token_cuts_end_in_half_a_character_only_inside_an_arrow(hf_tokenizer: object) -> None:
    problem = tasks.parse_problem("4+2△7-1×3")
    ids = tokenizer.encode_text(problem.completion())
    arrow_head = tokenizer.encode_text("→")[0]
    split_cuts = 0
    for cut in range(len(ids) + 1):
        text = hf_tokenizer.decode(ids[:cut], skip_special_tokens=True)  # type: ignore[attr-defined]
        assert text == tokenizer.decode_ids(ids[:cut])
        if cut and ids[cut - 1] == arrow_head:
            split_cuts += 1
            assert text.endswith("\ufffd")
        else:
            # A clean cut re-encodes to exactly its tokens: the receiver sees what was sent.
            assert "\ufffd" not in text
            assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == ids[:cut]  # type: ignore[operator]
    assert split_cuts == problem.completion().count("→")


def test_any_text_round_trips_through_bytes() -> None:
    text = "naïve 漢字 🙂 ×△→ \t\n"
    assert tokenizer.decode_ids(tokenizer.encode_text(text)) == text


def test_saved_files_are_complete(tmp_path: Path) -> None:
    tokenizer.save_tokenizer(tmp_path)
    assert {path.name for path in tmp_path.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
    assert '"chat_template"' in (tmp_path / "tokenizer_config.json").read_text(encoding="utf-8")
    assert '"type": "BPE"' in (tmp_path / "tokenizer.json").read_text(encoding="utf-8")
