"""Synthetic results folders for the viewer's tests: any number of problems, a planted jump in each
problem's potential, kept answers and completions, and CoTs whose text tries to break the page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FRACTIONS = [round(index / 10, 1) for index in range(11)]
SETTINGS_HASH = "5eed5eed"
# Text a page must show as text: markup, a script end, the page's own placeholders, a line
# separator, and characters outside the BMP (two UTF-16 units each: cut offsets must count them).
HOSTILE = "<b>bold?</b> </script><!-- /*INDEX*/ <!--DETAILS--> \u2028 𝑥² 🙂"


def write_synthetic_run(
    folder: Path,
    num_problems: int,
    *,
    n: int = 8,
    receivers: tuple[str, ...] = ("weak-model",),
    kept_completions: int = 4,
    completion_chars: int = 300,
    cot_lines: int = 12,
    seed: int = 0,
) -> Path:
    """Writes run.json, problems.jsonl, strong.jsonl and results.jsonl (no report) and returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"p{index:04d}" for index in range(num_problems)]
    run = {
        "fractions": FRACTIONS,
        "n_samples": n,
        "thresholds": {"baseline_max_potential": 0.0, "unlock_min_potential": 0.5},
        "grader": "exact",
        "strong_model": "strong-model",
        "weak_model": receivers[0],
        "strong_sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 2048, "seed": 1},
        "weak_sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 2048, "seed": 1},
        "keep_completions": kept_completions,
        "problem_ids": ids,
        "settings_hash": SETTINGS_HASH,
    }
    if len(receivers) > 1:
        run["receivers"] = list(receivers)
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    problems, strong, results = [], [], []
    for position, problem_id in enumerate(ids):
        answer = str(position % 97)
        lines = [
            f"Step {line}: " + ("we add the parts and check the remainder " * 2)[: 40 + 5 * (line % 7)]
            for line in range(cot_lines)
        ]
        lines[cot_lines // 2] += " " + HOSTILE
        lines[-1] = f"So the answer is {answer}."
        cot = "\n".join(lines)
        jump = float(rng.choice(FRACTIONS[1:]))
        prefixes = [
            {
                "fraction": fraction,
                "text": cot[: int(fraction * len(cot))],
                "num_tokens": int(fraction * 200),
                "answer_in_prefix": fraction == 1.0,
            }
            for fraction in FRACTIONS
        ]
        problems.append(
            {
                "id": problem_id,
                "problem": f"What is {position} mod 97?",
                "answer": answer,
                "metadata": {"level": 1 + position % 5},
            }
        )
        strong.append(
            {
                "problem_id": problem_id,
                "cot": cot,
                "answer": answer,
                "correct": position % 11 != 0,
                "cot_num_tokens": 200,
                "final_text": f"\\boxed{{{answer}}}",
                "prefixes": prefixes,
                "settings_hash": SETTINGS_HASH,
            }
        )
        for index, receiver in enumerate(receivers):
            for fraction in FRACTIONS:
                potential = (0.85 if fraction >= jump else 0.05) if index == 0 else (0.6 if fraction >= 0.5 else 0.1)
                correct = int(rng.binomial(n, potential))
                wrong = str((position + 1) % 97)
                counts = [[answer, correct], [wrong, n - correct]] if correct < n else [[answer, n]]
                completions = [
                    {
                        "text": f"[{receiver} {fraction} #{k}] "
                        + ("continuing the reasoning " * 40)[:completion_chars],
                        "extracted_answer": answer if k < correct else wrong,
                        "correct": k < correct,
                        "num_tokens": completion_chars // 4,
                        "finish_reason": "stop",
                    }
                    for k in range(min(n, kept_completions))
                ]
                results.append(
                    {
                        "problem_id": problem_id,
                        "fraction": fraction,
                        "n": n,
                        "num_correct": correct,
                        "prefix_num_tokens": int(fraction * 200),
                        "cot_num_tokens": 200,
                        "answer_in_prefix": fraction == 1.0,
                        "answer_counts": [pair for pair in counts if pair[1] > 0],
                        "completions": completions,
                        "receiver": receiver,
                        "mode": "free",
                        "settings_hash": SETTINGS_HASH,
                    }
                )
    for name, records in (("problems.jsonl", problems), ("strong.jsonl", strong), ("results.jsonl", results)):
        (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return folder
