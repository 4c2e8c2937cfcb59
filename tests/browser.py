"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium) for the
viewer's tests: offline, with the browser console collected."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_PATHS = ("chromium", "chromium-browser", "google-chrome")
DRIVER_PATHS = ("chromedriver", "chromium-driver")


def browser_paths() -> tuple[str, str] | None:
    browser = next((path for name in CHROMIUM_PATHS if (path := shutil.which(name))), None)
    driver = next((path for name in DRIVER_PATHS if (path := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A WebDriver on headless Chromium with the network cut off (every host resolves to nothing
    and the DevTools network is offline); skips when Chromium is not installed (`make browser`)."""
    paths = browser_paths()
    if paths is None:
        pytest.skip("Chromium and its driver are not installed (make browser installs Debian's)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's errors since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
