"""Train the testbed's strong and weak models from scratch on CPU.

``python -m testbed.train --output-dir models/testbed`` writes
``models/testbed/strong`` and ``models/testbed/weak``: complete Hugging Face folders
(``LlamaForCausalLM`` weights, config, generation config, byte-level BPE tokenizer with a
Qwen3-style chat template) that vLLM loads from the local path.

Both models see the same prompts, chains of 2 to 10 operations with one insight operator
``△`` (``testbed.tasks``). The strong model learns the insight rule, the tangents and the
lucky-guess shortcut. The weak model, smaller, learns the same CoT format with the naive rule
(``△`` read as ``+``): alone it gets the insight step, and so the answer, wrong, but given a
prefix that holds the right ``△`` result it finishes with the routine steps it knows.

Training is bounded by a step count so that a run is reproducible; ``--max-minutes`` is
only a safety cap and a run it cuts short says so in ``training.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cot_transfer.domain.answers import last_boxed_content
from testbed import tokenizer as vocab
from testbed.tasks import ChainProblem, Rule, Split, generate_problems, sample_problem

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

HARD_STEPS = 8
# One thread: results do not depend on the core count, and two runs can share 2 cores.
TORCH_THREADS = 1
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class Recipe:
    """How one model is built and trained.

    ``chain_steps`` lists the chain lengths a batch can have; a length listed twice is drawn
    twice as often. Each batch holds chains of one length, about ``batch_tokens`` tokens, padded
    to its longest row (tangents and lucky guesses change a CoT's length). ``rule`` is the
    insight rule the model is taught; ``lucky_share`` the share of lucky-guess chains drawn.
    """

    size: ModelSize
    chain_steps: tuple[int, ...]
    train_steps: int
    batch_tokens: int
    peak_learning_rate: float
    warmup_steps: int
    rule: Rule = Rule.INSIGHT
    lucky_share: float = 0.0
    # Warm start: the folder (next to the role folders) whose weights the first round starts
    # from, and the steps of further rounds, each restarting from the round before.
    base: str | None = None
    more_rounds: tuple[int, ...] = ()
    weight_decay: float = 0.01
    final_learning_rate_share: float = 0.05


V1_SIZE = ModelSize(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)
TRAIN_STEPS = (2, 3, 4, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10)


def strong_and_weak(strong: Recipe, weak_size: ModelSize | None = None) -> dict[str, Recipe]:
    """The weak model trains as the strong one does, but on the naive rule and without lucky guesses."""
    weak = replace(strong, rule=Rule.NAIVE, lucky_share=0.0, size=weak_size or strong.size)
    return {"strong": strong, "weak": weak}


PRESETS: dict[str, dict[str, Recipe]] = {
    # The shipped models: a warm start from the v1 testbed's strong model (``models/testbed/base``,
    # character-level chain arithmetic; testbed.warmstart maps its embeddings onto the BPE
    # vocabulary). Both models begin with its routine skills and learn the v2 format in three
    # rounds, one with the insight rule and one with the naive rule. On 2 shared cores this
    # took about 25 minutes per model, where a run from scratch ("scratch") needs hours.
    "testbed": strong_and_weak(
        Recipe(
            size=V1_SIZE,
            chain_steps=TRAIN_STEPS,
            train_steps=300,
            batch_tokens=2500,
            peak_learning_rate=1e-3,
            warmup_steps=20,
            lucky_share=0.06,
            base="base",
            more_rounds=(300, 400),
        )
    ),
    # From scratch, no base: the weak model is smaller. Not run to the end on the shared cores.
    "scratch": strong_and_weak(
        Recipe(
            size=V1_SIZE,
            chain_steps=TRAIN_STEPS,
            train_steps=1500,
            batch_tokens=5000,
            peak_learning_rate=2e-3,
            warmup_steps=100,
            lucky_share=0.06,
        ),
        weak_size=ModelSize(hidden_size=96, num_layers=4, num_heads=3, intermediate_size=384),
    ),
    # Seconds of training, for tests: proves the pipeline, not the task.
    "mini": strong_and_weak(
        Recipe(
            size=ModelSize(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128),
            chain_steps=(2, 3),
            train_steps=30,
            batch_tokens=1024,
            peak_learning_rate=3e-3,
            warmup_steps=3,
            lucky_share=0.1,
        )
    ),
}
ROLES = ("strong", "weak")


@dataclass(frozen=True)
class TrainingReport:
    role: str
    preset: str
    seed: int
    recipe: Recipe
    steps_done: int
    stopped_by_time_cap: bool
    seconds: float
    parameters: int
    first_losses: tuple[float, ...]
    last_losses: tuple[float, ...]
    greedy_accuracy_by_steps: dict[int, float]

    @property
    def initial_loss(self) -> float:
        return sum(self.first_losses) / len(self.first_losses)

    @property
    def final_loss(self) -> float:
        return sum(self.last_losses) / len(self.last_losses)


def sequence_ids(problem: ChainProblem, rule: Rule = Rule.INSIGHT) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and how many of them are prompt."""
    prompt = vocab.encode_prompt(problem.text)
    completion = vocab.encode_text(problem.completion(rule))
    return [*prompt, *completion, vocab.EOS_ID], len(prompt)


def training_example(problem: ChainProblem, rule: Rule) -> tuple[list[int], list[int]]:
    """Input ids and labels: the prompt (random digits) is never learned, the whole output is."""
    ids, prompt_length = sequence_ids(problem, rule)
    return ids, [IGNORE_INDEX] * prompt_length + ids[prompt_length:]


def sequence_length(steps: int) -> int:
    """Tokens of a plain (no tangent, no lucky guess) chain of ``steps`` operations."""
    operators = ["+"] * steps
    operators[0] = "△"
    probe = ChainProblem(tuple([1] * (steps + 1)), tuple(operators))
    return len(sequence_ids(probe)[0])


def model_config_for(size: ModelSize) -> LlamaConfig:
    from transformers import LlamaConfig

    if size.hidden_size % size.num_heads or size.head_dim not in (32, 64):
        # vLLM's CPU attention kernels accept only some head sizes; 16 was refused.
        raise ValueError(f"head_dim must be 32 or 64, got {size.hidden_size}/{size.num_heads}")
    return LlamaConfig(
        vocab_size=vocab.VOCAB_SIZE,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        head_dim=size.head_dim,
        max_position_embeddings=vocab.MODEL_MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=vocab.EOS_ID,
        pad_token_id=vocab.PAD_ID,
    )


def learning_rate_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.peak_learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.train_steps - recipe.warmup_steps)
    floor = recipe.final_learning_rate_share
    return recipe.peak_learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_batch(rng: random.Random, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, labels and attention mask of one batch, right-padded."""
    import torch

    steps = rng.choice(recipe.chain_steps)
    batch_size = max(1, recipe.batch_tokens // sequence_length(steps))
    examples = []
    for _ in range(batch_size):
        lucky = rng.random() < recipe.lucky_share if recipe.lucky_share else None
        problem = sample_problem(rng, steps, Split.TRAIN, lucky=lucky if steps > 1 else None)
        examples.append(training_example(problem, recipe.rule))
    width = max(len(ids) for ids, _ in examples)
    rows = [ids + [vocab.PAD_ID] * (width - len(ids)) for ids, _ in examples]
    labels = [row_labels + [IGNORE_INDEX] * (width - len(row_labels)) for _, row_labels in examples]
    mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples]
    return torch.tensor(rows), torch.tensor(labels), torch.tensor(mask)


def greedy_accuracy(
    model: LlamaForCausalLM, steps_to_check: Sequence[int], problems_per_length: int, seed: int, rule: Rule
) -> dict[int, float]:
    """Greedy solve rate on held-out chains of each length, graded by the ``\\boxed{}`` answer.

    The reference is the answer under the model's own ``rule``: the weak model is checked on
    what it was taught (the naive rule), so a low number means it did not learn its task.
    """
    import torch

    model.eval()
    accuracy: dict[int, float] = {}
    for steps in steps_to_check:
        problems = generate_problems(problems_per_length, steps, seed, Split.HELDOUT)
        encoded = [vocab.encode_prompt(problem.text) for problem in problems]
        width = max(len(ids) for ids in encoded)
        # Left padding, so that every row's generation starts at the same position.
        prompts = torch.tensor([[vocab.PAD_ID] * (width - len(ids)) + ids for ids in encoded])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
        with torch.no_grad():
            # transformers' generate() is typed against a mixin mypy cannot match to the model.
            output = cast(Any, model).generate(
                prompts,
                attention_mask=mask,
                max_new_tokens=sequence_length(steps) - width + 40,
                do_sample=False,
                eos_token_id=vocab.EOS_ID,
                pad_token_id=vocab.PAD_ID,
            )
        correct = 0
        for problem, row in zip(problems, output[:, width:].tolist(), strict=True):
            correct += last_boxed_content(vocab.decode_ids(row)) == problem.answer_for(rule)
        accuracy[steps] = correct / len(problems)
    return accuracy


def train_role(
    role: str,
    preset: str,
    output_dir: Path,
    seed: int,
    train_steps: int | None = None,
    max_seconds: float | None = None,
    check_problems: int = 0,
    log_every: int = 100,
    init_from: Path | None = None,
    threads: int = TORCH_THREADS,
) -> TrainingReport:
    import torch
    from transformers import LlamaForCausalLM

    recipe = PRESETS[preset][role]
    if train_steps is not None:
        recipe = replace(recipe, train_steps=train_steps, more_rounds=())
    if init_from is None and recipe.base is not None:
        init_from = output_dir.parent / recipe.base
    torch.set_num_threads(threads)
    losses: list[float] = []
    started = time.monotonic()
    stopped_by_time_cap = False
    rounds = (recipe.train_steps, *recipe.more_rounds)
    with tempfile.TemporaryDirectory(prefix=f"testbed-{role}-") as scratch:
        for index, steps in enumerate(rounds):
            # Each round starts like a fresh run from the last round's saved weights: the same
            # seeds, a new optimizer and learning-rate schedule over its own steps.
            round_recipe = replace(recipe, train_steps=steps)
            # Distinct streams per role, so that retraining one model leaves the other unchanged.
            torch.manual_seed(hash_seed(seed, role))
            rng = random.Random(f"cot-transfer-testbed-v2-train:{role}:{seed}")
            model = LlamaForCausalLM(model_config_for(recipe.size))
            if init_from is not None:
                from testbed.warmstart import transplant

                transplant(model, init_from)
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=recipe.peak_learning_rate, betas=(0.9, 0.98), weight_decay=recipe.weight_decay
            )
            model.train()
            for step in range(steps):
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    stopped_by_time_cap = True
                    break
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(step, round_recipe)
                input_ids, labels, mask = make_batch(rng, round_recipe)
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.item())
                if log_every and (step + 1) % log_every == 0:
                    recent = sum(losses[-log_every:]) / len(losses[-log_every:])
                    print(
                        f"[{role}] round {index + 1}/{len(rounds)} step {step + 1}/{steps} loss {recent:.4f}"
                        f" {time.monotonic() - started:.0f}s",
                        flush=True,
                    )
            if stopped_by_time_cap:
                break
            if index + 1 < len(rounds):
                init_from = Path(scratch) / f"round-{index + 1}"
                model.save_pretrained(init_from, safe_serialization=True)
                vocab.save_tokenizer(init_from)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    seconds = time.monotonic() - started
    accuracy: dict[int, float] = {}
    if check_problems:
        lengths = sorted({*recipe.chain_steps, HARD_STEPS})
        accuracy = greedy_accuracy(model, lengths, check_problems, hash_seed(seed, "check"), recipe.rule)
    window = max(1, min(20, len(losses) // 4))
    report = TrainingReport(
        role=role,
        preset=preset,
        seed=seed,
        recipe=recipe,
        steps_done=len(losses),
        stopped_by_time_cap=stopped_by_time_cap,
        seconds=round(seconds, 1),
        parameters=parameters,
        first_losses=tuple(losses[:window]),
        last_losses=tuple(losses[-window:]),
        greedy_accuracy_by_steps=accuracy,
    )
    save_model(model, output_dir, report)
    return report


def hash_seed(seed: int, label: str) -> int:
    # Python's hash() of a str changes between processes; this does not.
    return random.Random(f"{seed}:{label}").getrandbits(31)


def save_model(model: LlamaForCausalLM, directory: Path, report: TrainingReport) -> None:
    from transformers import GenerationConfig

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    # safetensors creates the file readable by its owner only; serving may run as another user.
    (directory / "model.safetensors").chmod(0o644)
    GenerationConfig(eos_token_id=vocab.EOS_ID, pad_token_id=vocab.PAD_ID).save_pretrained(directory)
    vocab.save_tokenizer(directory)
    summary = {
        **asdict(report),
        "initial_loss": round(report.initial_loss, 4),
        "final_loss": round(report.final_loss, 4),
        "first_losses": [round(loss, 4) for loss in report.first_losses],
        "last_losses": [round(loss, 4) for loss in report.last_losses],
    }
    (directory / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("models/testbed"))
    parser.add_argument("--roles", nargs="+", choices=ROLES, default=list(ROLES))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="testbed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per model (preset's when omitted)")
    parser.add_argument("--max-minutes", type=float, default=None, help="safety cap per model")
    parser.add_argument(
        "--check-problems", type=int, default=16, help="held-out chains per length for a greedy check (0: skip)"
    )
    parser.add_argument(
        "--init-from", type=Path, default=None, help="warm start from this model folder (testbed.warmstart)"
    )
    parser.add_argument(
        "--threads", type=int, default=TORCH_THREADS, help="torch threads (1 each when two runs share 2 cores)"
    )
    parser.add_argument("--log-every", type=int, default=100, help="steps between loss lines")
    args = parser.parse_args(argv)
    for role in args.roles:
        report = train_role(
            role,
            args.preset,
            args.output_dir / role,
            seed=args.seed,
            train_steps=args.steps,
            max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
            check_problems=args.check_problems,
            init_from=args.init_from,
            log_every=args.log_every,
            threads=args.threads,
        )
        print(
            f"[{role}] {report.parameters} parameters, {report.steps_done} steps in {report.seconds:.0f}s, "
            f"loss {report.initial_loss:.3f} -> {report.final_loss:.3f}, greedy accuracy by chain length "
            f"{report.greedy_accuracy_by_steps}, saved to {args.output_dir / role}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
