"""A short locust run against the real stack: every RPC is exercised and none fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.names import ALL_ENTRIES
from tests.conftest import REPO, RunningService

pytestmark = pytest.mark.integration

RUN_TIME_S = 30


def test_a_short_mixed_load_has_no_failures_and_covers_every_call(service: RunningService, tmp_path: Path) -> None:
    out = tmp_path / "locust"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run",
            "--host",
            service.address,
            "--users",
            "3",
            "--spawn-rate",
            "3",
            "--run-time",
            f"{RUN_TIME_S}s",
            "--out",
            str(out),
            # Small calls keep the 2-core machine responsive; each user makes every call once first.
            "--n",
            "2",
            "--max-tokens",
            "96",
            "--run-n",
            "2",
            "--run-fractions",
            "0,0.5,1",
            "--application",
            service.application,
        ],
        cwd=REPO,
        env={**os.environ, "COT_TRANSFER_TOKEN": service.token},
        capture_output=True,
        text=True,
        timeout=RUN_TIME_S + 300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    failures = {name: entry["failures"] for name, entry in summary["entries"].items() if entry["failures"]}
    assert failures == {}, output[-4000:]
    for name in ALL_ENTRIES:
        assert summary["entries"].get(name, {}).get("requests", 0) >= 1, (name, summary["entries"])
    assert (out / "report.html").stat().st_size > 0
    assert (out / "locust_stats.csv").exists()
