"""Python code run in a fresh interpreter, where ``sys.modules`` holds only what that code imported."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str) -> str:
    """``code``'s standard output; its own failure (an ``assert`` inside it) fails the test with its stderr."""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout
