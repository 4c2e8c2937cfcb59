"""The shipped testbed models and datasets: loadable, and they show the insight under greedy decoding.

The acceptance numbers (sampling, vLLM) are in testbed/README.md; this is the fast guard that
the shipped files still behave that way.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from testbed import tasks, tokenizer
from testbed.tasks import Rule, Split

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "testbed"
DATASETS = ROOT / "datasets"
EVAL_STEPS = [6, 7, 8, 9, 10]
# The documented commands that produced the shipped datasets: (file, count, seed, lucky every, id prefix).
SHIPPED_DATASETS = [
    ("testbed-hard.jsonl", 64, 1001, 16, "testbed-hard"),
    ("testbed-demo.jsonl", 16, 2002, 16, "testbed-demo"),
]


@pytest.mark.parametrize(("name", "count", "seed", "lucky_every", "id_prefix"), SHIPPED_DATASETS)
def test_shipped_datasets_are_what_the_generator_writes(
    name: str, count: int, seed: int, lucky_every: int, id_prefix: str
) -> None:
    stream = io.StringIO()
    problems = tasks.generate_problems(count, EVAL_STEPS, seed, Split.HELDOUT, tasks.EVAL_INSIGHT_WEIGHTS, lucky_every)
    tasks.write_jsonl(problems, id_prefix, stream)
    assert (DATASETS / name).read_text(encoding="utf-8") == stream.getvalue()


@pytest.fixture(scope="module")
def demo_problems() -> list[tasks.ChainProblem]:
    records = tasks.read_jsonl(DATASETS / "testbed-demo.jsonl")
    return [tasks.parse_problem(str(record["problem"])) for record in records]


def load(role: str) -> object:
    torch.set_num_threads(2)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(MODELS / role))
    model.eval()
    return model


def greedy_reproduces(model: object, prompt: list[int], continuation: list[int]) -> bool:
    """Whether greedy decoding after ``prompt`` writes exactly ``continuation``.

    One teacher-forced pass answers that: greedy decoding follows the continuation for as long
    as every next-token argmax agrees with it.
    """
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + continuation])).logits  # type: ignore[operator]
    predicted = logits[0].argmax(dim=-1).tolist()
    return bool(predicted[len(prompt) - 1 : len(prompt) - 1 + len(continuation)] == continuation)


@pytest.mark.parametrize("role", ["strong", "weak"])
def test_shipped_folders_are_complete(role: str) -> None:
    folder = MODELS / role
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    assert "tokenizer_config.json" in names
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert hf_tokenizer.eos_token_id == tokenizer.EOS_ID
    prompt = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "3+7△5×2"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == tokenizer.render_prompt("3+7△5×2")
    assert (folder / "tokenizer.json").read_text(encoding="utf-8") == tokenizer.build_tokenizer().to_str(
        pretty=True
    ) + "\n"


def test_strong_writes_the_reference_cots(demo_problems: list[tasks.ChainProblem]) -> None:
    strong = load("strong")
    written = [
        greedy_reproduces(
            strong,
            tokenizer.encode_prompt(problem.text),
            [*tokenizer.encode_text(problem.completion()), tokenizer.EOS_ID],
        )
        for problem in demo_problems
    ]
    assert sum(written) >= len(demo_problems) - 1


def test_weak_misses_the_insight_alone_and_finishes_after_it(demo_problems: list[tasks.ChainProblem]) -> None:
    weak = load("weak")
    naive = helped = 0
    insight_problems = [problem for problem in demo_problems if not problem.is_lucky_guess]
    for problem in insight_problems:
        prompt = tokenizer.encode_prompt(problem.text)
        # Alone it writes its own (naive) CoT, whose answer is wrong.
        naive_output = [*tokenizer.encode_text(problem.completion(Rule.NAIVE)), tokenizer.EOS_ID]
        naive += greedy_reproduces(weak, prompt, naive_output)
        # From the strong CoT cut right after the insight result, it writes the rest of it.
        strong_output = [*tokenizer.encode_text(problem.completion()), tokenizer.EOS_ID]
        truth = problem.ground_truth()
        assert truth.insight is not None
        cut = 1 + 1 + truth.insight.token  # <think>, then the reasoning through the insight result
        helped += greedy_reproduces(weak, prompt + strong_output[:cut], strong_output[cut:])
    assert naive >= len(insight_problems) - 1
    # Exact greedy reproduction of the whole rest is strict (a tangent's correction line must match
    # too): the shipped weak model does 13 of the 15 demo problems; sampled, its potential right
    # after the insight is what the demo's unlock curve rests on (testbed/README.md).
    assert helped >= len(insight_problems) - 2
