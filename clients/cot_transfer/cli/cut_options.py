"""`run`'s options for cut points, imported CoTs and kept answers."""

from __future__ import annotations

import argparse
from pathlib import Path

from cot_transfer.domain.steps import CutMode, StepBoundary

# argparse names of the options that change results: `run --resume` takes them from the folder.
CUT_SETTING_OPTIONS = ("cots", "cut", "step_boundary", "keep_completions")


def add_cut_arguments(parser: argparse.ArgumentParser) -> None:
    # Every default is None, so that `--resume` can tell an option given from one left out.
    parser.add_argument(
        "--cots",
        type=Path,
        help="imported CoTs instead of --problems: a JSONL of id, problem, answer, cot and optionally format"
        " (plain, qwen3, deepseek_r1, gpt_oss); the strong model is not called, the service cuts each CoT"
        " with the strong model's tokenizer",
    )
    parser.add_argument(
        "--cut",
        choices=[mode.value for mode in CutMode],
        help="where CoTs are cut: token (floor(fraction * tokens), the default), step (each fraction snapped down"
        " to a step boundary) or every_step (one prefix per step boundary; --fractions is not used)",
    )
    parser.add_argument(
        "--step-boundary",
        choices=[boundary.value for boundary in StepBoundary],
        help="with --cut step or every_step: a step ends at a line break (line, the default), or also after a"
        " sentence's closing punctuation followed by whitespace (sentence)",
    )
    parser.add_argument(
        "--keep-completions",
        action="store_const",
        const=True,
        help="keep every completion's text in results.jsonl (the answer counts are always kept)",
    )
