"""A miniature training run: the loss falls and the folder is a loadable Hugging Face model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import tasks, tokenizer, train

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[train.TrainingReport, Path]:
    directory = tmp_path_factory.mktemp("mini") / "strong"
    report = train.train_role("strong", "mini", directory, seed=0, train_steps=25, log_every=0)
    return report, directory


def test_loss_goes_down(mini_run: tuple[train.TrainingReport, Path]) -> None:
    report, _ = mini_run
    assert report.steps_done == 25
    assert report.final_loss < 0.8 * report.initial_loss


def test_folder_loads_back_with_transformers(mini_run: tuple[train.TrainingReport, Path]) -> None:
    _, directory = mini_run
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.head_dim in (32, 64)
    assert model.generation_config.eos_token_id == tokenizer.EOS_ID
    prompt = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "1+2*3"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<s>1+2*3\n"
    ids = hf_tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert json.loads((directory / "training.json").read_text())["steps_done"] == 25


def test_same_seed_trains_the_same_weights(tmp_path: Path, mini_run: tuple[train.TrainingReport, Path]) -> None:
    report, _ = mini_run
    again = train.train_role("strong", "mini", tmp_path / "again", seed=0, train_steps=25, log_every=0)
    assert again.last_losses == report.last_losses


def test_head_dim_sixteen_is_refused() -> None:
    with pytest.raises(ValueError, match="head_dim"):
        train.model_config_for(train.ModelSize(hidden_size=64, num_layers=1, num_heads=4, intermediate_size=64))


def test_weak_examples_keep_long_rewrites_out_of_the_loss() -> None:
    problem = tasks.parse_problem("1+2+3+4+5+6+7")
    ids, labels = train.training_example(problem, max_rewrite_ops=4)
    prompt_length = len(tokenizer.encode_prompt(problem.text))
    first_line_length = len(problem.cot_lines()[0]) + 1
    assert len(ids) == len(labels)
    # The prompt and the first line (it restates 5 operations) are context only ...
    assert set(labels[: prompt_length + first_line_length]) == {train.IGNORE_INDEX}
    # ... and everything from the second line (4 operations) on is learned, EOS included.
    assert labels[prompt_length + first_line_length :] == ids[prompt_length + first_line_length :]
    assert labels[-1] == tokenizer.EOS_ID
    _, strong_labels = train.training_example(problem, max_rewrite_ops=None)
    assert strong_labels[prompt_length:] == ids[prompt_length:]


def test_shipped_recipes_are_servable_and_cover_the_hard_setting() -> None:
    recipes = train.PRESETS["testbed"]
    for recipe in recipes.values():
        train.model_config_for(recipe.size)
        longest = train.sequence_length(max(recipe.chain_steps))
        assert longest <= tokenizer.MODEL_MAX_LENGTH // 2
    assert train.HARD_STEPS in recipes["strong"].chain_steps
    assert recipes["strong"].max_rewrite_ops is None
    weak_max = recipes["weak"].max_rewrite_ops
    assert weak_max is not None and weak_max < train.HARD_STEPS - 1
