"""A run's settings for cut points and kept answers: in run.json and on the wire."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cot_transfer.domain.cut_search import Probe, SearchSettings, replay
from cot_transfer.domain.requests import StrongCot
from cot_transfer.domain.steps import CutMode, parse_cut_mode, parse_step_boundary
from cot_transfer.domain.transfer import Thresholds

# Completion texts a row keeps (``--keep-completions``): a few by default, chosen so that each
# answer the receiver gave has its text (``kept_answers.chosen_completions``); 0 keeps none.
DEFAULT_KEPT_COMPLETIONS = 4
ALL_COMPLETIONS = -1


def cut_settings_json(cut: str, step_boundary: str, keep_completions: int) -> dict[str, Any]:
    """The run.json entries of these settings; only those that differ from the defaults, so a
    token-cut run keeps the settings hash it always had."""
    parse_cut_mode(cut)
    parse_step_boundary(step_boundary)
    settings: dict[str, Any] = {}
    if cut != CutMode.TOKEN.value:
        settings["cut"] = cut
        settings["step_boundary"] = step_boundary
    if cut == CutMode.SEARCH.value:
        # The search's own settings are part of what a resume must match.
        settings["search"] = SearchSettings().to_dict()
    if keep_completions == ALL_COMPLETIONS:
        settings["keep_completions"] = True  # as runs kept every completion before the cap existed
    elif keep_completions > 0:
        settings["keep_completions"] = keep_completions
    return settings


def kept_completions_from_json(value: Any) -> int:
    """run.json's ``keep_completions``: absent or false (an older run) keeps none, true keeps all."""
    if value is True:
        return ALL_COMPLETIONS
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def kept_completions_from_text(text: str) -> int:
    """``--keep-completions``'s value: a count per row, or ``all``."""
    if text == "all":
        return ALL_COMPLETIONS
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"--keep-completions: must be a count >= 0 or all, got {text!r}")
    return value


def cut_run_options(cut: str, step_boundary: str, keep_completions: int) -> dict[str, Any]:
    """``CotTransferClient.run_transfer``'s keyword arguments for these settings."""
    return {
        "cut": parse_cut_mode(cut),
        "step_boundary": parse_step_boundary(step_boundary),
        # The service sends every completion or none; the results folder keeps the chosen few.
        "keep_completions": keep_completions != 0,
    }


def resume_fractions(cut: str, record: StrongCot, fractions: Sequence[float]) -> Sequence[float]:
    """The fractions a resumed problem has rows at: every stored prefix's for an every-step cut
    (each problem has its own), the run's otherwise."""
    if cut == CutMode.EVERY_STEP.value:
        return [prefix.fraction for prefix in record.prefixes]
    return fractions


# A stored row of a search run, by (problem, receiver, mode) and then fraction.
StoredProbes = Mapping[tuple[str, str, str], Mapping[float, Probe]]


def problem_rows(
    cut: str,
    record: StrongCot,
    fractions: Sequence[float],
    receiver_modes: Sequence[tuple[str, str]],
    thresholds: Thresholds,
    stored: StoredProbes,
) -> set[tuple[float, str, str]]:
    """The (fraction, receiver, mode) rows a problem has when it is finished, as far as its rows
    on disk tell: each of its fractions for every (receiver, mode), or for a search run the cuts
    its search probed and the wave it would probe next (replayed over ``stored``: the service's
    search is a function of what it probed). Rows of the set not on disk are what a resume draws."""
    if cut != CutMode.SEARCH.value:
        return {
            (fraction, receiver, mode)
            for fraction in resume_fractions(cut, record, fractions)
            for receiver, mode in receiver_modes
        }
    cut_fractions = [prefix.fraction for prefix in record.prefixes]
    cut_of = {fraction: index for index, fraction in enumerate(cut_fractions)}
    rows = set()
    for receiver, mode in receiver_modes:
        probes = stored.get((record.problem_id, receiver, mode), {})
        search = replay(
            len(cut_fractions),
            thresholds,
            {cut_of[fraction]: probe for fraction, probe in probes.items() if fraction in cut_of},
        )
        for cut_index in (*search.probes, *search.next_wave()):
            rows.add((cut_fractions[cut_index], receiver, mode))
    return rows
