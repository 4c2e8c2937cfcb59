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
        [{"role": "user", "content": "1△2×3"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == tokenizer.render_prompt("1△2×3")
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


def test_examples_learn_the_whole_output_and_the_weak_one_the_naive_rule() -> None:
    problem = tasks.parse_problem("1+2△3+4")
    prompt_length = len(tokenizer.encode_prompt(problem.text))
    for rule in tasks.Rule:
        ids, labels = train.training_example(problem, rule)
        assert len(ids) == len(labels)
        assert set(labels[:prompt_length]) == {train.IGNORE_INDEX}
        assert labels[prompt_length:] == ids[prompt_length:]
        assert labels[-1] == tokenizer.EOS_ID
        assert tokenizer.decode_ids(ids[prompt_length:]) == problem.completion(rule)
    strong_ids, _ = train.training_example(problem, tasks.Rule.INSIGHT)
    weak_ids, _ = train.training_example(problem, tasks.Rule.NAIVE)
    # 3△3 is 5 (3×3+3+3) for the strong model and 6 (3+3) for the weak one.
    assert "3△3=5" in tokenizer.decode_ids(strong_ids) and "3△3=6" in tokenizer.decode_ids(weak_ids)


def test_batches_are_padded_and_masked() -> None:
    import random

    recipe = train.PRESETS["mini"]["strong"]
    input_ids, labels, mask = train.make_batch(random.Random(0), recipe)
    assert input_ids.shape == labels.shape == mask.shape
    padding = mask == 0
    assert bool((input_ids[padding] == tokenizer.PAD_ID).all())
    assert bool((labels[padding] == train.IGNORE_INDEX).all())


def test_shipped_recipes_are_servable_and_cover_the_hard_setting() -> None:
    recipes = train.PRESETS["testbed"]
    for recipe in recipes.values():
        train.model_config_for(recipe.size)
        longest = train.sequence_length(max(recipe.chain_steps))
        assert longest <= tokenizer.MODEL_MAX_LENGTH // 2
        assert train.HARD_STEPS in recipe.chain_steps
    assert recipes["strong"].rule is tasks.Rule.INSIGHT and recipes["strong"].lucky_share > 0
    assert recipes["weak"].rule is tasks.Rule.NAIVE


def test_warm_start_copies_the_source_weights_and_maps_embeddings_by_text(
    tmp_path: Path, mini_run: tuple[train.TrainingReport, Path]
) -> None:
    from testbed import warmstart

    _, source = mini_run
    recipe = train.PRESETS["mini"]["strong"]
    model = transformers.LlamaForCausalLM(train.model_config_for(recipe.size))
    mapped = warmstart.transplant(model, source)
    trained = transformers.AutoModelForCausalLM.from_pretrained(str(source))
    for (name, value), (_, expected) in zip(model.state_dict().items(), trained.state_dict().items(), strict=True):
        if "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(value, expected), name
    # Same tokenizer: every token's row is the source's own (the padding rows have no token).
    tokens = len(tokenizer.bpe_vocab()) + len(tokenizer.added_token_ids())
    assert len(mapped) == tokens
    assert torch.equal(model.model.embed_tokens.weight[:tokens], trained.model.embed_tokens.weight[:tokens])
    assert {"3", "×", "△", "<think>", "<|im_end|>"} <= set(mapped)


def test_warm_start_aliases_stand_in_for_new_symbols() -> None:
    from testbed import warmstart

    texts = warmstart.target_texts()
    ids = {text: token_id for token_id, text in texts.items()}
    assert ids["3"] == tokenizer.encode_text("3")[0]
    head, tail = tokenizer.encode_text("→")
    assert warmstart.ALIASES[texts[head]] == "," and warmstart.ALIASES[texts[tail]] == " "
