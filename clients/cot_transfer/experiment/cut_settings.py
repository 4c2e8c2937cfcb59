"""A run's settings for cut points and kept answers: in run.json and on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cot_transfer.domain.kept_answers import count_answers
from cot_transfer.domain.requests import CompletionResult, StrongCot
from cot_transfer.domain.steps import CutMode, parse_cut_mode, parse_step_boundary


def cut_settings_json(cut: str, step_boundary: str, keep_completions: bool) -> dict[str, Any]:
    """The run.json entries of these settings; only those that differ from the defaults, so a
    token-cut run keeps the settings hash it always had."""
    parse_cut_mode(cut)
    parse_step_boundary(step_boundary)
    settings: dict[str, Any] = {}
    if cut != CutMode.TOKEN.value:
        settings["cut"] = cut
        settings["step_boundary"] = step_boundary
    if keep_completions:
        settings["keep_completions"] = True
    return settings


def cut_run_options(cut: str, step_boundary: str, keep_completions: bool) -> dict[str, Any]:
    """``CotTransferClient.run_transfer``'s keyword arguments for these settings."""
    return {
        "cut": parse_cut_mode(cut),
        "step_boundary": parse_step_boundary(step_boundary),
        "keep_completions": keep_completions,
    }


def resume_fractions(cut: str, record: StrongCot, fractions: Sequence[float]) -> Sequence[float]:
    """The fractions a resumed problem has rows at: every stored prefix's for an every-step cut
    (each problem has its own), the run's otherwise."""
    if cut == CutMode.EVERY_STEP.value:
        return [prefix.fraction for prefix in record.prefixes]
    return fractions


def kept_answers(result: CompletionResult, keep_completions: bool) -> dict[str, Any]:
    """The kept-answer fields of a row completed by the client itself (a resume), as the service
    fills them in a run."""
    return {
        "answer_counts": count_answers(completion.extracted_answer for completion in result.completions),
        "completions": tuple(result.completions) if keep_completions else (),
    }
