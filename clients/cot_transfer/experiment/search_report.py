"""The report's account of a cut-point search run (``--cut search``): what the search found per
(problem, receiver, mode), replayed from the rows (``cot_transfer.domain.cut_search.replay``),
and the markdown that marks the run's curves as searched.

A search run stores every step's prefix in ``strong.jsonl`` but draws rows only at the cuts the
search probed; a row's ``num_steps`` is its cut (0 the baseline, ``M - 1`` the whole CoT, ``M``
the problem's stored prefixes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from cot_transfer.domain.cut_search import Probe, SearchSettings, replay
from cot_transfer.domain.steps import CutMode
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.markdown_tables import markdown_table, percent

if TYPE_CHECKING:
    import pandas as pd

# summary.json's key: one dict per (problem, receiver, mode).
SEARCH_KEY = "cut_search"

# What the search assumes and so what it can miss (cot_transfer.domain.cut_search's docstring).
SEARCH_ASSUMPTION = (
    "The search assumes that between two neighbouring probes that are both below tau and do not fall, the"
    " curve does not rise above tau and come back, and that no single step inside a bracket rises more than the"
    " bracket does; so it can miss a tangent that dips and recovers between two probes (a bump above tau, or a"
    " jump hidden behind a dip). Probes that show a fall are refined, so a tangent is found whenever one of its"
    " cuts is probed."
)


def is_search_run(settings: Mapping[str, Any]) -> bool:
    return settings.get("cut") == CutMode.SEARCH.value


def search_settings(settings: Mapping[str, Any]) -> SearchSettings:
    """The run's search settings from run.json (the defaults where it names none)."""
    raw = settings.get("search") or {}
    known = {field.name for field in fields(SearchSettings)}
    return SearchSettings(**{name: value for name, value in raw.items() if name in known})


def _cut_fraction(prefixes: Sequence[Any], cut: int | None) -> float | None:
    """The stored prefix's own share of the CoT at ``cut``; its share of the steps where the
    prefix holds none."""
    if cut is None:
        return None
    prefix = prefixes[cut] if cut < len(prefixes) else None
    if isinstance(prefix, Mapping) and isinstance(prefix.get("fraction"), int | float):
        return float(prefix["fraction"])
    return cut / max(len(prefixes) - 1, 1)


def search_results(
    results: pd.DataFrame,
    strong: Mapping[str, Mapping[str, Any]],
    thresholds: Thresholds,
    settings: SearchSettings,
) -> list[dict[str, Any]]:
    """Per (problem, receiver, mode) in the rows' order: the search as far as its rows take it
    (``SearchResult.to_dict()``) with its ids and the unlock and jump cuts' fractions. ``results``
    is ``load.results_frame``'s table, ``strong`` the strong.jsonl records by problem id (a
    problem's cut count is its stored prefixes); a problem without a stored CoT is left out."""
    found = []
    for (problem_id, receiver, mode), rows in results.groupby(["problem_id", "receiver", "mode"], sort=False):
        prefixes = list((strong.get(problem_id) or {}).get("prefixes") or ())
        if not prefixes:
            continue
        probes = {
            int(row.num_steps): Probe(int(row.num_correct), int(row.n), float(row.potential))
            for row in rows.itertuples()
            if 0 <= int(row.num_steps) < len(prefixes) and int(row.n) > 0
        }
        result = replay(len(prefixes), thresholds, probes, settings).result()
        found.append(
            {
                "problem_id": problem_id,
                "receiver": receiver,
                "mode": mode,
                **result.to_dict(),
                "unlock_fraction": _cut_fraction(prefixes, result.unlock_cut),
                "jump_fraction": _cut_fraction(prefixes, result.jump_cut),
            }
        )
    return found


def searched_line(found: Sequence[Mapping[str, Any]]) -> str:
    """``searched: 412 of 2,310 cuts probed (17.8%)`` over every searched curve."""
    probed = sum(len(entry["probed"]) for entry in found)
    cuts = sum(int(entry["cuts"]) for entry in found)
    return f"searched: {probed:,} of {cuts:,} cuts probed ({percent(probed / cuts if cuts else None)})"


SEARCHED_CAPTION = (
    " Searched run (cut-point search): rows exist only at the probed cuts; every search probes the baseline"
    " and the whole CoT, the two fractions drawn here."
)


def _cut_cell(cut: int | None, fraction: float | None) -> str:
    return "none" if cut is None else f"{cut} ({percent(fraction)})"


def search_markdown(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's "Cut-point search" section."""
    rows = [
        [
            str(entry["problem_id"]),
            str(entry["receiver"]),
            str(entry["mode"]),
            str(entry["cuts"]),
            str(len(entry["probed"])),
            _cut_cell(entry["unlock_cut"], entry["unlock_fraction"]),
            _cut_cell(entry["jump_cut"], entry["jump_fraction"]),
            "n/a" if entry["jump_rise"] is None else f"{entry['jump_rise']:+.3f}",
            "yes" if entry["finished"] else "no",
            "yes" if entry["non_monotone"] else "no",
        ]
        for entry in found
    ]
    unfinished = sum(not entry["finished"] for entry in found)
    lines = [
        "",
        "## Cut-point search",
        "",
        f"{searched_line(found).capitalize()} over {len(found)} curves (problem, receiver, mode): this run's curves"
        " are **searched, not dense**. Rows exist only at the probed cuts; a cut the search skipped was never"
        f" measured. {SEARCH_ASSUMPTION}",
        "",
        "*Cuts M*: the CoT's step cuts (0 the baseline, M - 1 the whole CoT); *unlock cut*: the first cut whose"
        " potential reaches tau, with a probed cut below tau just before it (its share of the CoT in brackets);"
        " *largest jump*: the cut with the largest rise from the cut before it, among the resolved ones;"
        " *finished*: the search has nothing left to probe"
        + (f" ({unfinished} not finished: resume the run)" if unfinished else "")
        + "; *non-monotone*: a probe showed the potential falling (a tangent). Per curve: `summary.json`"
        f" `{SEARCH_KEY}`.",
        "",
    ]
    lines += markdown_table(
        [
            "problem",
            "receiver",
            "mode",
            "cuts M",
            "probed",
            "unlock cut",
            "largest jump cut",
            "rise",
            "finished",
            "non-monotone",
        ],
        rows,
        text_columns=3,
    )
    lines.append("")
    return lines
