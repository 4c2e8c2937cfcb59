"""results.json and the BENCHMARKS.md section the harness writes; the locust summary it reads."""

import json
from pathlib import Path

import pytest

from benchmarks.results import (
    DOC_END,
    DOC_START,
    HEADLINE_KEYS,
    ResultsError,
    markdown_section,
    update_doc,
    write_results,
)
from loadtests.run import failures_by_status, format_table, locust_command, read_stats, verdict

HEADLINES = {
    "speedup_vs_naive": 12.5,
    "prefill_ratio": 1.05,
    "serve_overhead_ms_p50": 4.2,
    "serve_overhead_ms_p99": 9.9,
    "locust_rps": 3.1,
    "locust_failures": 0,
}


def test_results_hold_the_headline_keys_first_then_the_details(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(path, {"served": {"rows": 1}, **HEADLINES})
    written = json.loads(path.read_text())
    assert list(written)[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    assert written["served"] == {"rows": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_missing_headline_key_is_an_error(tmp_path: Path) -> None:
    partial = {key: value for key, value in HEADLINES.items() if key != "prefill_ratio"}
    with pytest.raises(ResultsError, match="prefill_ratio"):
        write_results(tmp_path / "results.json", partial)


def test_a_phase_that_did_not_run_is_null_not_missing(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(path, {**HEADLINES, "locust_rps": None, "locust_failures": None})
    assert json.loads(path.read_text())["locust_rps"] is None


def test_headline_values_must_be_numbers(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="speedup_vs_naive"):
        write_results(tmp_path / "results.json", {**HEADLINES, "speedup_vs_naive": "fast"})


def test_markdown_section_shows_values_targets_and_the_machine() -> None:
    results = {
        **HEADLINES,
        "speedup_vs_naive": 8.0,
        "machine": {"cpu_model": "Test CPU", "cores": 2, "memory_gib": 24.0, "load_before": 1.0},
        "run": {"date": "2026-11-21 10:00 UTC", "command": "make bench", "workload_name": "standard"},
        "summary_lines": ["one detail"],
    }
    section = markdown_section(results)
    assert section.startswith(DOC_START) and section.rstrip().endswith(DOC_END)
    assert "| `speedup_vs_naive` | 8.00 x | >= 10x (NOT met) |" in section
    assert "| `prefill_ratio` | 1.05 x | <= 1.2x of the bound (met) |" in section
    assert "Test CPU, 2 cores, 24.0 GiB" in section
    assert "`make bench`" in section and "2026-11-21" in section
    assert "- one detail" in section


def test_a_key_the_run_did_not_measure_shows_as_not_run_with_no_verdict() -> None:
    # Null (a phase that did not run) and absent (an older results file) alike.
    section = markdown_section({**HEADLINES, "locust_rps": None, "decisions_speedup_vs_offline": None})
    assert "| `locust_rps` | not run |  |" in section
    assert "| `decisions_speedup_vs_offline` | not run | >= 3x |" in section
    assert "| `decisions_agreement_vs_offline` | not run | >= 0.98 |" in section
    assert "| `adaptive_sample_ratio` | not run | <= 0.25 |" in section


def test_the_decision_keys_are_held_to_their_targets() -> None:
    section = markdown_section(
        {**HEADLINES, "decisions_speedup_vs_offline": 3.5, "decisions_agreement_vs_offline": 0.97}
    )
    assert "| `decisions_speedup_vs_offline` | 3.50 x | >= 3x (met) |" in section
    assert "| `decisions_agreement_vs_offline` | 0.97 | >= 0.98 (NOT met) |" in section


def test_update_doc_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nIntro.\n\n" + markdown_section(HEADLINES) + "\n## Method\n\nText.\n")
    update_doc(doc, markdown_section({**HEADLINES, "locust_rps": 7.25}))
    text = doc.read_text()
    assert text.count(DOC_START) == 1 and text.count(DOC_END) == 1
    assert "7.25 req/s" in text and "3.10 req/s" not in text
    assert text.startswith("# Benchmarks\n\nIntro.") and text.rstrip().endswith("Text.")


def test_update_doc_appends_a_section_to_a_doc_without_one(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n")
    update_doc(doc, markdown_section(HEADLINES))
    assert doc.read_text().count(DOC_START) == 1


STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
grpc,WeakModel.Complete,120,0,410,430.5,200,900,3000,2.0,0.0,410,450,480,500,600,700,800,850,900,900,900
grpc,WeakModel.Complete [UNAVAILABLE],2,2,5,5.0,4,6,0,0.03,0.03,5,5,5,5,6,6,6,6,6,6,6
,Aggregated,122,2,400,423.0,4,900,2950,2.03,0.03,400,450,480,500,600,700,800,850,900,900,900
"""


def test_read_stats_parses_locusts_csv(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV)
    stats = read_stats(path)
    complete = stats["entries"]["WeakModel.Complete"]
    assert complete["requests"] == 120 and complete["rps"] == 2.0
    assert complete["p50_ms"] == 410 and complete["p99_ms"] == 850
    assert stats["aggregated"]["failures"] == 2
    assert "WeakModel.Complete [UNAVAILABLE]" in format_table(stats)


def test_verdict_fails_on_any_failure_or_no_calls(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV)
    assert verdict(1, read_stats(path)) == (1, "2 calls failed (2 UNAVAILABLE)")
    assert verdict(0, {"entries": {}, "aggregated": {}})[0] == 1
    ok = {"entries": {"x": {"failures": 0}}, "aggregated": {"requests": 5}}
    assert verdict(0, ok) == (0, "ok")
    assert verdict(2, ok)[0] == 2


SHEDDING_CSV = STATS_CSV.replace("[UNAVAILABLE]", "[RESOURCE_EXHAUSTED]")


def test_allowed_statuses_count_as_shed_load_not_failures(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(SHEDDING_CSV)
    stats = read_stats(path)
    assert failures_by_status(stats) == {"RESOURCE_EXHAUSTED": 2}
    # Locust itself exits 1 when any call failed; the shed calls alone do not fail the run.
    assert verdict(1, stats, ["RESOURCE_EXHAUSTED"]) == (0, "ok; 2 calls shed with RESOURCE_EXHAUSTED")
    assert verdict(2, stats, ["RESOURCE_EXHAUSTED"]) == (2, "locust exited with 2")
    assert verdict(1, stats) == (1, "2 calls failed (2 RESOURCE_EXHAUSTED)")
    path.write_text(STATS_CSV)
    assert verdict(1, read_stats(path), ["RESOURCE_EXHAUSTED"])[0] == 1


def test_failures_without_a_status_code_are_other(tmp_path: Path) -> None:
    stats = {"entries": {"BAD_RESPONSE": {"failures": 3}, "x": {"failures": 0}}, "aggregated": {"requests": 9}}
    assert failures_by_status(stats) == {"OTHER": 3}
    assert verdict(1, stats, ["RESOURCE_EXHAUSTED"]) == (1, "3 calls failed (3 OTHER)")


def test_locust_command_is_headless_with_reports(tmp_path: Path) -> None:
    command = locust_command("127.0.0.1:1", 3, 1.5, "30s", tmp_path, extra=["--n", "2"])
    assert "--headless" in command
    assert command[command.index("--csv") + 1] == str(tmp_path / "locust")
    assert command[command.index("--html") + 1] == str(tmp_path / "report.html")
    assert command[-2:] == ["--n", "2"]
