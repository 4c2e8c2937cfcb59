"""``benchmarks/results.json`` and the results table in ``BENCHMARKS.md``.

The headline keys are fixed (``HEADLINE_KEYS``); everything else a run measured goes under
other keys. A headline whose phase did not run is ``null``, never left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINE_KEYS = (
    "speedup_vs_naive",
    "prefill_ratio",
    "serve_overhead_ms_p50",
    "serve_overhead_ms_p99",
    "locust_rps",
    "locust_failures",
)
DOC_START = "<!-- bench:results:start (written by python -m benchmarks.bench) -->"
DOC_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Target:
    description: str
    higher_is_better: bool
    threshold: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


TARGETS: dict[str, Target] = {
    "speedup_vs_naive": Target(">= 10x", True, 10.0),
    "prefill_ratio": Target("<= 1.2x of the bound", False, 1.2),
    "locust_failures": Target("0", False, 0.0),
    "serve_overhead_ms_p50": Target("<= 3 ms", False, 3.0),
    "served_vs_offline": Target(">= 1.0x", True, 1.0),
    "prefill_ratio_two_replicas": Target("<= 1.2x of the bound, below the default router's", False, 1.2),
    "adaptive_sample_ratio": Target("<= 0.25", False, 0.25),
    "adaptive_decision_agreement": Target(">= 0.98", True, 0.98),
    "adaptive_unlock_rates_within_brute_force_ci": Target("true", True, 1.0),
    "decisions_speedup_vs_offline": Target(">= 3x", True, 3.0),
    "decisions_agreement_vs_offline": Target(">= 0.98", True, 0.98),
}


class ResultsError(ValueError):
    """The results miss a headline key or hold a value JSON cannot carry."""


def ordered_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline keys first, in their fixed order, then the details."""
    missing = [key for key in HEADLINE_KEYS if key not in results]
    if missing:
        raise ResultsError(f"results miss the headline keys {missing}")
    for key in HEADLINE_KEYS:
        value = results[key]
        if value is not None and not isinstance(value, int | float):
            raise ResultsError(f"{key} must be a number or null, got {value!r}")
    ordered = {key: results[key] for key in HEADLINE_KEYS}
    ordered.update((key, value) for key, value in results.items() if key not in ordered)
    return ordered


def write_results(path: Path, results: Mapping[str, Any]) -> dict[str, Any]:
    """Writes the results atomically (a crash never leaves half a file) and returns what was written."""
    ordered = ordered_results(results)
    text = json.dumps(ordered, indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return ordered


def _format(value: Any, digits: int = 2) -> str:
    if value is None:
        return "not run"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _verdict(key: str, value: Any) -> str:
    target = TARGETS.get(key)
    if target is None:
        return ""
    met = target.met(value)
    return "" if met is None else ("met" if met else "NOT met")


def markdown_section(results: Mapping[str, Any]) -> str:
    """The results table, the command, the machine and the date, as Markdown."""
    machine = results.get("machine", {})
    run = results.get("run", {})
    rows = [
        ("Experiment throughput vs naive HF `generate`", "speedup_vs_naive", "x"),
        ("Weak prefill computed / block-size lower bound", "prefill_ratio", "x"),
        ("Serving overhead (gRPC + Ray Serve) p50", "serve_overhead_ms_p50", "ms"),
        ("Serving overhead (gRPC + Ray Serve) p99", "serve_overhead_ms_p99", "ms"),
        ("Locust `WeakModel.Complete` sustained rate", "locust_rps", "req/s"),
        ("Locust failures", "locust_failures", ""),
        ("Served `Transfer.Run` / offline `LLM.generate` throughput", "served_vs_offline", "x"),
        ("Weak prefill / bound, 2 replicas on 2 nodes, prefix-affinity router", "prefill_ratio_two_replicas", "x"),
        (
            "Weak prefill / bound, 2 replicas on 2 nodes, Serve's default router",
            "prefill_ratio_two_replicas_default_router",
            "x",
        ),
        ("Adaptive weak samples / brute force (n_max samples per row)", "adaptive_sample_ratio", ""),
        ("Rows whose adaptive unlock decision equals brute force's", "adaptive_decision_agreement", ""),
        (
            "Every adaptive unlock rate inside the brute-force 95% interval",
            "adaptive_unlock_rates_within_brute_force_ci",
            "",
        ),
        ("Offline script's time to every decision / served adaptive run's", "decisions_speedup_vs_offline", "x"),
        (
            "Decisions equal between the offline script and the served adaptive run",
            "decisions_agreement_vs_offline",
            "",
        ),
    ]
    lines = [
        DOC_START,
        "",
        f"Measured {run.get('date', '?')} with `{run.get('command', '?')}`"
        f" ({run.get('workload_name', '?')} workload, {run.get('device', '?')}).",
        "",
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores,"
        f" {machine.get('memory_gib', '?')} GiB memory; load average (1 min) before / after:"
        f" {_format(machine.get('load_before'))} / {_format(machine.get('load_after'))}.",
        "",
        "| Measure | Key | Value | Target |",
        "|---|---|---|---|",
    ]
    for label, key, unit in rows:
        value = results.get(key)
        shown = _format(value) + (f" {unit}" if unit and value is not None else "")
        target = TARGETS.get(key)
        verdict = _verdict(key, value)
        target_text = "" if target is None else target.description + (f" ({verdict})" if verdict else "")
        lines.append(f"| {label} | `{key}` | {shown} | {target_text} |")
    details = results.get("summary_lines", [])
    if details:
        lines += ["", *(f"- {line}" for line in details)]
    lines += ["", DOC_END]
    return "\n".join(lines) + "\n"


def update_doc(path: Path, section: str) -> None:
    """Replaces the results section of ``path`` (between the markers), or appends one."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = text.find(DOC_START)
    end = text.find(DOC_END)
    if start != -1 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(DOC_END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text, encoding="utf-8")
