"""The viewer page's data, the report's figures for papers and its reading aids, on a synthetic run
(tests/viewer_runs.py) whose CoTs hold markup, the page's own placeholders and non-BMP characters."""

from __future__ import annotations

import csv
import itertools
import json
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

import cot_transfer.experiment
from cot_transfer.cli.main import main
from cot_transfer.experiment.plots import unlock_rate_figure
from cot_transfer.experiment.report import write_report
from cot_transfer.experiment.view import VIEW_FILE, serve_view, view_data
from tests.viewer_runs import FRACTIONS, HOSTILE, write_synthetic_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_synthetic_run(tmp_path_factory.mktemp("view") / "run", 6, receivers=("weak-model", "strong-model"))
    write_report(folder)
    return folder


def test_every_figure_has_svg_pdf_and_its_data(run: Path) -> None:
    for name in ("unlock_rate", "potential", "heatmap", "groups_level", "receivers"):
        assert (run / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (run / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (run / f"{name}.svg").read_bytes()[:2000]
        assert (run / f"{name}_data.csv").stat().st_size > 0
    with (run / "groups_level_data.csv").open() as stream:
        levels = list(csv.DictReader(stream))
    assert {row["level"] for row in levels} == {"1", "2", "3", "4", "5"} and len(levels) == 5 * len(FRACTIONS)
    with (run / "unlock_rate_data.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [float(row["fraction"]) for row in rows] == FRACTIONS
    summary = json.loads((run / "summary.json").read_text())
    assert [float(row["unlock_rate"]) for row in rows] == pytest.approx(summary["unlock_rate"])
    with (run / "heatmap_data.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 6 * len(FRACTIONS)


def test_equal_curves_both_show_and_legend_swatches_match(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    # The demo's case: no prefix states the answer, so the rate without it is the unlock rate.
    summary["unlock_rate_without_answer"] = summary["unlock_rate"]
    summary["unlock_rate_without_answer_interval"] = summary["unlock_rate_interval"]
    output = unlock_rate_figure(summary)
    axes = output.figure.axes[0]
    lines = {to_hex(line.get_color()): line for line in axes.get_lines() if line.get_linestyle() != "None"}
    main_line, without = lines[to_hex("tab:blue")], lines[to_hex("tab:purple")]
    # Dashed with open markers, drawn above the solid line: both stay visible where they are equal.
    assert main_line.get_linestyle() == "-" and without.get_linestyle() == "--"
    assert without.get_zorder() > main_line.get_zorder() and without.get_markerfacecolor() == "white"
    legend = output.figure.legends[0]
    has_true = any(stats.get("true_unlock_rate_interval") for stats in summary["per_fraction"])
    assert len(legend.legend_handles) == len(legend.get_texts()) == 3 + has_true
    assert "\n" not in axes.get_title()
    expected = {
        "95% interval of the true": "tab:cyan",
        "unlock rate (": "tab:blue",
        "unlock rate, answer": "tab:purple",
        "any correct": "tab:orange",
    }
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        # Each entry's swatch is its own curve's colour: the band under the line, or the error bars.
        swatch: Any = handle.get_facecolor() if isinstance(handle, Rectangle) else handle.get_color()[0]  # type: ignore[union-attr]
        (colour,) = [colour for start, colour in expected.items() if text.get_text().startswith(start)]
        assert to_hex(swatch, keep_alpha=False) == to_hex(colour), text.get_text()


def test_report_lists_sampling_settings_and_what_to_read(run: Path) -> None:
    report = (run / "report.md").read_text()
    for setting in ("temperature 0.6", "top-p 0.95", "max_tokens 2048", "seed 1", "up to 4 (distinct answers first)"):
        assert setting in report
    assert "## Problems worth reading first" in report and f"]({VIEW_FILE}#problem=p000" in report
    assert "## Kept answers" not in report  # the per-row dump lives in the viewer now
    assert "Unlock rate by CoT prefix length" not in report  # titles are in the figures, captions here
    assert "*Share of the" in report


def test_page_data_marks_cuts_where_javascript_counts_them(run: Path) -> None:
    run_level, details = view_data(run)
    assert [problem["id"] for problem in run_level["problems"]] == [f"p{index:04d}" for index in range(6)]
    assert [key["name"] for key in run_level["keys"]] == ["weak-model", "strong-model"]
    strong = [json.loads(line) for line in (run / "strong.jsonl").read_text().splitlines()]
    for record, detail in zip(strong, details, strict=True):
        assert HOSTILE in detail["cot"]
        for (fraction, offset, exact, *_), prefix in zip(detail["cuts"], record["prefixes"], strict=True):
            assert fraction == prefix["fraction"] and exact
            # UTF-16 units: the JavaScript slice up to the offset is the prefix.
            assert detail["cot"].encode("utf-16-le")[: 2 * offset].decode("utf-16-le") == prefix["text"]
        weak = detail["receivers"][0]
        assert len(weak["pts"]) == len(FRACTIONS) and len(weak["steps"]) == len(FRACTIONS) - 1
        assert all(len(row["c"]) == 4 for row in weak["rows"])
    assert run_level["problems"][0]["aip"] == 1.0
    for problem in run_level["problems"]:
        for start, unlocked_at in zip(problem["p0"], problem["fu"], strict=True):
            # Only a problem unsolved at 0% can be unlocked, for every receiver.
            assert unlocked_at is None or start <= run_level["tau0"]
    settings = dict(run_level["settings"])
    assert settings["weak sampling"].startswith("temperature 0.6")


def test_page_is_self_contained_and_its_data_survives_hostile_text(run: Path) -> None:
    page = (run / VIEW_FILE).read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched
    assert page.count("</script>") == page.count("<script")  # no CoT ends a script early
    _, details = view_data(run)
    blocks = re.findall(r'<script type="application/json" id="problem-(\d+)">(.*?)</script>', page, re.S)
    assert [int(position) for position, _ in blocks] == list(range(len(details)))
    assert [json.loads(block) for _, block in blocks] == json.loads(json.dumps(details))
    index = re.search(r'<script type="application/json" id="index">(.*?)</script>', page, re.S)
    assert index is not None and len(json.loads(index.group(1))["problems"]) == 6


def test_results_carry_step_importance(run: Path) -> None:
    results = cot_transfer.experiment.load(run).results
    curve = results[(results.problem_id == "p0001") & (results.receiver == "weak-model")].sort_values("fraction")
    potentials = curve.potential.tolist()
    assert curve.step_importance.isna().tolist() == [True] + [False] * 10
    assert curve.step_importance.tolist()[1:] == pytest.approx(
        [after - before for before, after in itertools.pairwise(potentials)]
    )
    assert (curve.step_importance_low.iloc[1:] <= curve.step_importance.iloc[1:]).all()
    assert (curve.step_importance.iloc[1:] <= curve.step_importance_high.iloc[1:]).all()
    assert curve.answer_shift.iloc[1:].between(0, 1).all()
    stored = pq.read_table(run / "results.parquet").to_pandas()
    assert {"step_importance", "step_importance_low", "step_importance_high", "answer_shift"} <= set(stored.columns)


def test_view_command(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / VIEW_FILE).unlink()
    assert main(["view", str(run)]) == 0
    assert f"viewer: {(run / VIEW_FILE).resolve()}" in capsys.readouterr().out
    assert main(["view", str(tmp_path)]) == 2
    assert "not a results folder" in capsys.readouterr().err


def test_serve_answers_on_loopback_only(run: Path) -> None:
    server = serve_view(run)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{VIEW_FILE}", timeout=10) as response:
            assert response.status == 200 and b'id="index"' in response.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/unlock_rate.svg", timeout=10) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
