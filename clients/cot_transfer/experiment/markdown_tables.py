"""Markdown building blocks shared by the report's sections (``markdown``, ``receivers_report``,
``answers_report``): one module that imports no section, so no section imports another's module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1) -> list[str]:
    """The first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    alignment = [":---" if column < text_columns else "---:" for column in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(alignment) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def rate_with_interval(rate: float | None, interval: Mapping[str, float] | None) -> str:
    if rate is None:
        return "n/a"
    if interval is None:
        return percent(rate)
    return f"{percent(rate)} [{percent(interval['low'])}, {percent(interval['high'])}]"


def bounds(interval: Mapping[str, float] | None) -> str:
    return "n/a" if interval is None else f"[{percent(interval['low'])}, {percent(interval['high'])}]"
