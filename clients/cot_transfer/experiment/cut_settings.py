"""A run's settings for cut points and kept answers: in run.json and on the wire."""

from __future__ import annotations

from typing import Any

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
