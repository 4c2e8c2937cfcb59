"""Train the testbed's strong and weak models from scratch on CPU.

``python -m testbed.train --output-dir models/testbed`` writes
``models/testbed/strong`` and ``models/testbed/weak``: complete Hugging Face folders
(``LlamaForCausalLM`` weights, config, generation config, tokenizer with chat template) that
vLLM loads from the local path.

Both models see the same prompts and CoTs, chains of 2 to 10 operations (the hard setting,
``HARD_STEPS``, is 8). The strong model learns to write every line. The weak model is
smaller and learns to write only lines that restate at most ``max_rewrite_ops`` (4)
operations: longer lines are in its context but never in its loss. Alone it cannot get
past the first lines of a hard problem (it drops part of the chain), yet once the strong
model's CoT has shortened the chain it finishes the rest, because that part of a long CoT is
what it was trained to write.

Training is bounded by a step count so that a run is reproducible; ``--max-minutes`` is
only a safety cap and a run it cuts short says so in ``training.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from testbed import tokenizer as vocab
from testbed.tasks import ANSWER_PREFIX, ChainProblem, Split, generate_problems, sample_problem

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

HARD_STEPS = 8
TORCH_THREADS = 2
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
    twice as often. Each batch holds chains of one length (they all have the same token
    count, so nothing is padded) and about ``batch_tokens`` tokens.
    """

    size: ModelSize
    chain_steps: tuple[int, ...]
    train_steps: int
    batch_tokens: int
    peak_learning_rate: float
    warmup_steps: int
    weight_decay: float = 0.01
    final_learning_rate_share: float = 0.05
    max_rewrite_ops: int | None = None


PRESETS: dict[str, dict[str, Recipe]] = {
    "testbed": {
        "strong": Recipe(
            size=ModelSize(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512),
            chain_steps=(2, 3, 4, 5, 6, 6, 7, 7, 8, 8, 8, 9, 9, 10),
            train_steps=1500,
            batch_tokens=5000,
            peak_learning_rate=2e-3,
            warmup_steps=100,
        ),
        "weak": Recipe(
            size=ModelSize(hidden_size=64, num_layers=4, num_heads=2, intermediate_size=256),
            chain_steps=(2, 3, 4, 5, 6, 7, 8, 9, 10),
            train_steps=1500,
            batch_tokens=5000,
            peak_learning_rate=2e-3,
            warmup_steps=100,
            max_rewrite_ops=4,
        ),
    },
    # Seconds of training, for tests: proves the pipeline, not the task.
    "mini": {
        "strong": Recipe(
            size=ModelSize(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128),
            chain_steps=(2, 3),
            train_steps=30,
            batch_tokens=1024,
            peak_learning_rate=3e-3,
            warmup_steps=3,
        ),
        "weak": Recipe(
            size=ModelSize(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128),
            chain_steps=(2, 3),
            train_steps=30,
            batch_tokens=1024,
            peak_learning_rate=3e-3,
            warmup_steps=3,
            max_rewrite_ops=1,
        ),
    },
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


def sequence_ids(problem: ChainProblem) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and how many of them are prompt."""
    prompt = vocab.encode_prompt(problem.text)
    completion = vocab.encode_text(problem.completion())
    return [*prompt, *completion, vocab.EOS_ID], len(prompt)


def training_example(problem: ChainProblem, max_rewrite_ops: int | None) -> tuple[list[int], list[int]]:
    """Input ids and labels; only tokens the model should learn to write carry a label.

    The prompt is random digits and is never learned. With ``max_rewrite_ops`` set, CoT lines
    that restate more operations than that stay context only: the model reads them but is
    never taught to write them.
    """
    ids, prompt_length = sequence_ids(problem)
    labels = [IGNORE_INDEX] * prompt_length
    lines = problem.cot_lines()
    for index, line in enumerate(lines):
        restated_ops = problem.num_steps - 1 - index
        learned = max_rewrite_ops is None or restated_ops <= max_rewrite_ops
        line_ids = vocab.encode_text(line + "\n")
        labels.extend(line_ids if learned else [IGNORE_INDEX] * len(line_ids))
    labels.extend(ids[len(labels) :])
    return ids, labels


def sequence_length(steps: int) -> int:
    probe = ChainProblem(tuple([0] * (steps + 1)), tuple(["+"] * steps))
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
        bos_token_id=vocab.BOS_ID,
        eos_token_id=vocab.EOS_ID,
        pad_token_id=vocab.PAD_ID,
    )


def learning_rate_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.peak_learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.train_steps - recipe.warmup_steps)
    floor = recipe.final_learning_rate_share
    return recipe.peak_learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_batch(rng: random.Random, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    steps = rng.choice(recipe.chain_steps)
    batch_size = max(1, recipe.batch_tokens // sequence_length(steps))
    rows: list[list[int]] = []
    labels: list[list[int]] = []
    for _ in range(batch_size):
        ids, row_labels = training_example(sample_problem(rng, steps, Split.TRAIN), recipe.max_rewrite_ops)
        rows.append(ids)
        labels.append(row_labels)
    return torch.tensor(rows), torch.tensor(labels)


def greedy_accuracy(
    model: LlamaForCausalLM, steps_to_check: Sequence[int], problems_per_length: int, seed: int
) -> dict[int, float]:
    """Greedy solve rate on held-out chains of each length, graded by the final answer."""
    import torch

    model.eval()
    accuracy: dict[int, float] = {}
    for steps in steps_to_check:
        problems = generate_problems(problems_per_length, steps, seed, Split.HELDOUT)
        prompts = torch.tensor([vocab.encode_prompt(problem.text) for problem in problems])
        with torch.no_grad():
            # transformers' generate() is typed against a mixin mypy cannot match to the model.
            output = cast(Any, model).generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=sequence_length(steps) - prompts.shape[1] + 8,
                do_sample=False,
                eos_token_id=vocab.EOS_ID,
                pad_token_id=vocab.PAD_ID,
            )
        correct = 0
        for problem, row in zip(problems, output[:, prompts.shape[1] :].tolist(), strict=True):
            text = vocab.decode_ids(row)
            correct += text.rsplit(ANSWER_PREFIX, 1)[-1].strip() == problem.answer
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
) -> TrainingReport:
    import torch
    from transformers import LlamaForCausalLM

    recipe = PRESETS[preset][role]
    if train_steps is not None:
        recipe = replace(recipe, train_steps=train_steps)
    torch.set_num_threads(TORCH_THREADS)
    # Distinct streams per role, so that retraining one model leaves the other unchanged.
    torch.manual_seed(hash_seed(seed, role))
    rng = random.Random(f"cot-transfer-testbed-train:{role}:{seed}")
    model = LlamaForCausalLM(model_config_for(recipe.size))
    parameters = sum(parameter.numel() for parameter in model.parameters())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.peak_learning_rate, betas=(0.9, 0.98), weight_decay=recipe.weight_decay
    )
    losses: list[float] = []
    started = time.monotonic()
    stopped_by_time_cap = False
    model.train()
    for step in range(recipe.train_steps):
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            stopped_by_time_cap = True
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, recipe)
        input_ids, labels = make_batch(rng, recipe)
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(
                f"[{role}] step {step + 1}/{recipe.train_steps} loss {recent:.4f} {time.monotonic() - started:.0f}s",
                flush=True,
            )
    seconds = time.monotonic() - started
    accuracy: dict[int, float] = {}
    if check_problems:
        lengths = sorted({*recipe.chain_steps, HARD_STEPS})
        accuracy = greedy_accuracy(model, lengths, check_problems, seed=hash_seed(seed, "check"))
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
    GenerationConfig(bos_token_id=vocab.BOS_ID, eos_token_id=vocab.EOS_ID, pad_token_id=vocab.PAD_ID).save_pretrained(
        directory
    )
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
        "--check-problems", type=int, default=64, help="held-out chains per length for a greedy check (0: skip)"
    )
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
