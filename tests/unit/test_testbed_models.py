"""The shipped testbed models and datasets: loadable, and they show unlocking under greedy decoding.

The acceptance numbers (sampling, vLLM) are in services/cot_transfer/testbed/README.md; this
is the fast guard that the shipped files still behave that way.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cot_transfer.testbed import tasks, tokenizer
from cot_transfer.testbed.tasks import Split

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "testbed"
DATASETS = ROOT / "datasets"
# The documented commands that produced the shipped datasets: (file, steps, count, seed, id prefix).
SHIPPED_DATASETS = [
    ("testbed-hard.jsonl", 8, 64, 1001, "testbed-hard"),
    ("testbed-demo.jsonl", 8, 12, 2002, "testbed-demo"),
]


@pytest.mark.parametrize(("name", "steps", "count", "seed", "id_prefix"), SHIPPED_DATASETS)
def test_shipped_datasets_are_what_the_generator_writes(
    name: str, steps: int, count: int, seed: int, id_prefix: str
) -> None:
    stream = io.StringIO()
    tasks.write_jsonl(tasks.generate_problems(count, steps, seed, Split.HELDOUT), id_prefix, stream)
    assert (DATASETS / name).read_text() == stream.getvalue()


@pytest.fixture(scope="module")
def demo_problems() -> list[tasks.ChainProblem]:
    return [tasks.parse_problem(str(record["problem"])) for record in tasks.read_jsonl(DATASETS / "testbed-demo.jsonl")]


def load(role: str) -> object:
    torch.set_num_threads(2)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(MODELS / role))
    model.eval()
    return model


def greedy_completions(model: object, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    batch = torch.tensor(prompts)  # equal lengths: every hard problem and cut has the same token count
    with torch.no_grad():
        output = model.generate(  # type: ignore[attr-defined]
            batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.EOS_ID,
            pad_token_id=tokenizer.PAD_ID,
        )
    return [tokenizer.decode_ids(row) for row in output[:, batch.shape[1] :].tolist()]


def final_answer(text: str) -> str:
    return text.rsplit(tasks.ANSWER_PREFIX, 1)[-1].strip()


@pytest.mark.parametrize("role", ["strong", "weak"])
def test_shipped_folders_are_complete(role: str) -> None:
    folder = MODELS / role
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    assert "tokenizer_config.json" in names
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert hf_tokenizer.eos_token_id == tokenizer.EOS_ID
    prompt = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "3+7-5*2"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == tokenizer.render_prompt("3+7-5*2")


def test_strong_solves_hard_problems_and_weak_needs_its_cot(demo_problems: list[tasks.ChainProblem]) -> None:
    strong, weak = load("strong"), load("weak")
    prompts = [tokenizer.encode_prompt(problem.text) for problem in demo_problems]
    budget = len(tokenizer.encode_text(demo_problems[0].completion())) + 8

    strong_texts = greedy_completions(strong, prompts, budget)
    assert strong_texts == [problem.completion() for problem in demo_problems]

    alone = greedy_completions(weak, prompts, budget)
    solved_alone = sum(final_answer(text) == problem.answer for text, problem in zip(alone, demo_problems, strict=True))
    assert solved_alone <= len(demo_problems) // 3

    # Cut the strong CoT at half its tokens, on a token boundary as the experiment does.
    strong_ids = [[*tokenizer.encode_text(text), tokenizer.EOS_ID] for text in strong_texts]
    cut = len(strong_ids[0]) // 2
    helped = greedy_completions(weak, [p + ids[:cut] for p, ids in zip(prompts, strong_ids, strict=True)], budget)
    solved_helped = sum(
        final_answer(text) == problem.answer for text, problem in zip(helped, demo_problems, strict=True)
    )
    assert solved_helped >= len(demo_problems) - 1
