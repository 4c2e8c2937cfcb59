"""`run`'s options for cut points, imported CoTs and kept answers."""

from __future__ import annotations

import argparse
from pathlib import Path

from cot_transfer.domain.steps import CutMode, StepBoundary
from cot_transfer.experiment.cut_settings import DEFAULT_KEPT_COMPLETIONS, kept_completions_from_text

# argparse names of the options that change results: `run --resume` takes them from the folder.
CUT_SETTING_OPTIONS = ("cots", "cut", "step_boundary", "keep_completions")


def add_cut_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
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
        " to a step boundary), every_step (one prefix per step boundary; --fractions is not used) or search"
        " (every step boundary cut, but rows only where a search for the unlock point and the largest jump"
        " probes: a grid, then bisection; see the README's 'Cut-point search')",
    )
    parser.add_argument(
        "--step-boundary",
        choices=[boundary.value for boundary in StepBoundary],
        help="with --cut step, every_step or search: a step ends at a line break (line, the default), or also after a"
        " sentence's closing punctuation followed by whitespace (sentence)",
    )
    parser.add_argument(
        "--keep-completions",
        nargs="?",
        const="all",
        type=_kept_completions,
        metavar="N",
        help=f"completion texts kept per row in results.jsonl: N (default {DEFAULT_KEPT_COMPLETIONS}, one per"
        " distinct answer first), or all (the flag alone); the answer counts are always kept",
    )
    parser.add_argument(
        "--no-completions",
        dest="keep_completions",
        action="store_const",
        const=0,
        help="keep no completion texts (--keep-completions 0)",
    )


def _kept_completions(text: str) -> int:
    try:
        return kept_completions_from_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def kept_completions_of(args: argparse.Namespace) -> int:
    """The completion texts a row keeps, as the command line asks (the default when it does not)."""
    kept = getattr(args, "keep_completions", None)
    return DEFAULT_KEPT_COMPLETIONS if kept is None else int(kept)
