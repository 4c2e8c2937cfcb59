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
                counts: list[tuple[str, int]] = [(answer, correct), (wrong, n - correct)]
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
                        "answer_counts": [[text, count] for text, count in counts if count > 0],
                        "completions": completions,
                        "receiver": receiver,
                        "mode": "free",
                        "settings_hash": SETTINGS_HASH,
                    }
                )
    for name, records in (("problems.jsonl", problems), ("strong.jsonl", strong), ("results.jsonl", results)):
        (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return folder


def measure_page(page: Path, opens: int = 5) -> dict[str, float]:
    """Load and interaction times of ``page`` in headless Chromium (milliseconds), and its size."""
    from tests.browser import console_errors, headless_chromium

    with headless_chromium() as driver:
        driver.get(page.resolve().as_uri())
        timing = driver.execute_script(
            "const t = performance.timing; return {dom: t.domContentLoadedEventEnd - t.navigationStart,"
            " load: t.loadEventEnd - t.navigationStart, script: window.__viewTimings.first_render_ms,"
            " index: window.__viewTimings.index_parse_ms};"
        )
        sort = driver.execute_script(
            "const th = document.querySelector('th[data-sort=\"fu\"]'); const t0 = performance.now();"
            " th.click(); return performance.now() - t0;"
        )
        opened = []
        for position in range(opens):
            opened.append(
                driver.execute_script(
                    "const row = document.querySelectorAll('#problem-table tbody tr')[arguments[0]];"
                    " row.click(); return window.__viewTimings.last_problem_ms;",
                    position * 97,
                )
            )
        errors = console_errors(driver)
    if errors:
        raise AssertionError(f"console errors: {errors}")
    return {
        "page_bytes": float(page.stat().st_size),
        "dom_content_loaded_ms": float(timing["dom"]),
        "load_ms": float(timing["load"]),
        "script_render_ms": float(timing["script"]),
        "index_parse_ms": float(timing["index"]),
        "sort_ms": float(sort),
        "open_problem_ms_max": float(max(opened)),
    }


if __name__ == "__main__":
    # python -m tests.viewer_runs OUT [PROBLEMS]: a synthetic run of PROBLEMS (default 500) x 11
    # fractions, its report and page, and the page's load times in headless Chromium.
    import sys
    import time

    from cot_transfer.experiment.report import write_report

    out = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    if not (out / "summary.json").is_file():
        write_synthetic_run(out, count)
        started = time.perf_counter()
        write_report(out)
        print(f"report: {time.perf_counter() - started:.1f} s")
    for name, value in measure_page(out / "view.html").items():
        print(f"{name}: {value:,.1f}")
