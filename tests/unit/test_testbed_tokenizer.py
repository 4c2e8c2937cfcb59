"""The testbed tokenizer as Hugging Face loads it matches the ids the models were trained on."""

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
    assert hf_tokenizer.bos_token_id == tokenizer.BOS_ID  # type: ignore[attr-defined]
    assert hf_tokenizer.eos_token_id == tokenizer.EOS_ID  # type: ignore[attr-defined]
    assert hf_tokenizer.pad_token_id == tokenizer.PAD_ID  # type: ignore[attr-defined]
    assert hf_tokenizer.eos_token == "</s>"  # type: ignore[attr-defined]


def test_chat_template_renders_the_training_prompt(hf_tokenizer: object) -> None:
    messages = [{"role": "user", "content": "3+7-5*2"}]
    prompt = hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tokenize=False, add_generation_prompt=True
    )
    assert prompt == tokenizer.render_prompt("3+7-5*2") == "<s>3+7-5*2\n"
    ids = hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert list(ids) == tokenizer.encode_prompt("3+7-5*2")


def test_chat_template_refuses_unknown_roles(hf_tokenizer: object) -> None:
    with pytest.raises(Exception, match="user and assistant"):
        hf_tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "system", "content": "x"}], tokenize=False, add_generation_prompt=True
        )


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_prompt_and_completion_encode_to_training_ids(hf_tokenizer: object, add_special_tokens: bool) -> None:
    for problem in tasks.generate_problems(10, 8, seed=2):
        prompt = tokenizer.render_prompt(problem.text)
        text = prompt + problem.completion()
        ids = hf_tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]  # type: ignore[operator]
        assert ids == tokenizer.encode_prompt(problem.text) + tokenizer.encode_text(problem.completion())


def test_any_token_cut_decodes_to_text_that_re_encodes_to_the_cut(hf_tokenizer: object) -> None:
    problem = tasks.generate_problems(1, 8, seed=5)[0]
    completion_ids = [*tokenizer.encode_text(problem.completion()), tokenizer.EOS_ID]
    for cut in range(len(completion_ids) + 1):
        text = hf_tokenizer.decode(completion_ids[:cut], skip_special_tokens=True)  # type: ignore[attr-defined]
        assert text == tokenizer.decode_ids(completion_ids[:cut])
        expected = [index for index in completion_ids[:cut] if index != tokenizer.EOS_ID]
        assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == expected  # type: ignore[operator]


def test_unknown_characters_are_refused_by_the_training_encoder() -> None:
    with pytest.raises(ValueError, match="outside"):
        tokenizer.encode_text("3+7\u00f7")


def test_saved_files_are_complete(tmp_path: Path) -> None:
    tokenizer.save_tokenizer(tmp_path)
    assert {path.name for path in tmp_path.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
    assert '"chat_template"' in (tmp_path / "tokenizer_config.json").read_text()
