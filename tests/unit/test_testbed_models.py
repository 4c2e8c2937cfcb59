"""The shipped testbed models and datasets: loadable, and they show unlocking under greedy decoding.

The acceptance numbers (sampling, vLLM) are in services/cot_transfer/testbed/README.md; this
is the fast guard that the shipped files still behave that way.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from testbed import tasks, tokenizer
from testbed.tasks import Split

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


def greedy_reproduces(model: object, prompts: list[list[int]], continuations: list[list[int]]) -> list[bool]:
    """Whether greedy decoding after each prompt writes exactly its continuation.

    One teacher-forced pass answers that: greedy decoding follows the continuation for as long
    as every next-token argmax agrees with it.
    """
    rows = [prompt + continuation for prompt, continuation in zip(prompts, continuations, strict=True)]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(rows)).logits  # type: ignore[operator]
    predicted = logits.argmax(dim=-1).tolist()
    verdicts = []
    for row, prompt, continuation in zip(predicted, prompts, continuations, strict=True):
        start = len(prompt) - 1
        verdicts.append(row[start : start + len(continuation)] == continuation)
    return verdicts


def greedy_first_lines(model: object, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    batch = torch.tensor(prompts)
    with torch.no_grad():
        output = model.generate(  # type: ignore[attr-defined]
            batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.EOS_ID,
            pad_token_id=tokenizer.PAD_ID,
        )
    return [tokenizer.decode_ids(row).split("\n")[0] for row in output[:, batch.shape[1] :].tolist()]


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
    # Every hard problem has the same prompt and CoT length, so the rows batch without padding.
    prompts = [tokenizer.encode_prompt(problem.text) for problem in demo_problems]
    outputs = [[*tokenizer.encode_text(problem.completion()), tokenizer.EOS_ID] for problem in demo_problems]

    assert all(greedy_reproduces(strong, prompts, outputs))

    # Alone, the weak model cannot restate the long chain in its first line.
    first_lines = greedy_first_lines(weak, prompts, max_new_tokens=len(demo_problems[0].cot_lines()[0]) + 1)
    wrong = sum(line != problem.cot_lines()[0] for line, problem in zip(first_lines, demo_problems, strict=True))
    assert wrong >= len(demo_problems) - 1

    # From half the strong CoT, cut on a token boundary as the experiment does, it finishes.
    cut = len(outputs[0]) // 2
    helped = greedy_reproduces(
        weak, [p + o[:cut] for p, o in zip(prompts, outputs, strict=True)], [o[cut:] for o in outputs]
    )
    assert sum(helped) >= len(demo_problems) - 1
