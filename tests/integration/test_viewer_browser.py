"""The viewer as a person uses it: a real run against the stack, its view.html opened offline in
headless Chromium, clicked through; a screenshot stays in the run folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import console_errors, headless_chromium
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

SCREENSHOT = "view_screenshot.png"
DEMO = REPO / "datasets" / "testbed-demo.jsonl"


def _ids(driver: Any) -> list[str]:
    rows = driver.find_elements("css selector", "#problem-table tbody tr")
    return [row.get_attribute("data-id") for row in rows if row.is_displayed()]


def _column(driver: Any, index: int) -> list[str]:
    rows = driver.find_elements("css selector", "#problem-table tbody tr")
    return [row.find_elements("css selector", "td")[index].text for row in rows if row.is_displayed()]


def check_view_in_browser(page: Path, *, problems: int, cuts: int) -> None:
    """Opens ``page`` offline and uses it: the run's curves, the list (sorting, filtering), one
    problem (its CoT's cut marks, its curve), a cut (answers, completions); saves a screenshot."""
    with headless_chromium() as driver:
        driver.get(page.resolve().as_uri())
        # Nothing fetched: every byte is in the page (the page's CSP allows no network either).
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        timings = driver.execute_script("return window.__viewTimings")
        assert timings["first_render_ms"] < 2000

        # The run level: the unlock curves are drawn, with their points.
        curves = driver.find_elements("css selector", "#unlock-charts svg path.curve")
        assert len(curves) >= 2
        assert all(re.match(r"M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+", curve.get_attribute("d")) for curve in curves)
        assert len(driver.find_elements("css selector", "#unlock-charts svg .pt")) >= 11

        # The list sorts by a click on a header, both ways; missing values stay last.
        driver.find_element("css selector", 'nav button[data-tab="list"]').click()
        listed = _ids(driver)
        assert len(listed) == problems and listed == sorted(listed)
        header = driver.find_element("css selector", 'th[data-sort="id"]')
        header.click()
        assert _ids(driver) == sorted(listed, reverse=True)
        driver.find_element("css selector", 'th[data-sort="p1"]').click()
        ends = [float(cell) for cell in _column(driver, 5) if cell != "–"]
        assert ends == sorted(ends)
        # Filtering: an id substring leaves one row.
        driver.find_element("css selector", "#f-id").send_keys(listed[2])
        assert _ids(driver) == [listed[2]]
        driver.find_element("css selector", "#f-id").clear()
        driver.find_element("css selector", "#f-id").send_keys(" ")  # input event with an empty filter
        assert len(_ids(driver)) == problems

        # One problem: its CoT with a mark at every cut, and its potential curve.
        driver.find_element("css selector", f'#problem-table tr[data-id="{listed[0]}"]').click()
        assert driver.find_element("css selector", "#tab-problem").is_displayed()
        marks = driver.find_elements("css selector", "#cot .cut")
        assert len(marks) == cuts
        assert driver.find_element("css selector", "#cot").text.strip()
        points = driver.find_elements("css selector", "#potential-chart svg .pt")
        assert len(points) == cuts

        # A cut: the receiver's answers there and the kept completions themselves.
        marks[5].click()
        assert "selected" in driver.find_elements("css selector", "#cot .cut")[5].get_attribute("class")
        detail = driver.find_element("css selector", "#cut-detail")
        assert detail.find_element("css selector", "h3").text.startswith("Cut 5: 50%")
        assert detail.find_elements("css selector", ".answers code")
        completions = detail.find_elements("css selector", ".completion")
        assert completions and all(c.find_element("css selector", "pre").text for c in completions)
        # The same from the curve: a click on its last point shows the whole CoT's cut.
        driver.find_elements("css selector", "#potential-chart svg .pt")[-1].click()
        assert driver.find_element("css selector", "#cut-detail h3").text.startswith(f"Cut {cuts - 1}: 100%")

        driver.save_screenshot(str(page.parent / SCREENSHOT))
        assert console_errors(driver) == []


def test_a_real_run_reads_in_the_browser(service: RunningService, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = service.cli("run", "--problems", str(DEMO), "--limit", "6", "--n", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    page = out / "view.html"
    assert f"viewer: {page.resolve()}" in done.stdout
    assert page.stat().st_size < 2_000_000

    check_view_in_browser(page, problems=6, cuts=11)
    assert (out / SCREENSHOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
