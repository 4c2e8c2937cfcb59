"""The client side (library, CLI, experiment) imports none of the server's stack.

Checked in a fresh interpreter, where ``sys.modules`` shows everything an import pulled in.
"""

from __future__ import annotations

import json

from tests.fresh_interpreter import run_fresh

CLIENT_MODULES = (
    "cot_transfer.client",
    "cot_transfer.client.client",
    "cot_transfer.client.convert",
    "cot_transfer.client.retry",
    "cot_transfer.cli.main",
    "cot_transfer.cli.run",
    "cot_transfer.cli.serve",
    "cot_transfer.experiment.runner",
    "cot_transfer.experiment.report",
    "cot_transfer.experiment.datasets",
)

SERVER_ONLY = ("ray", "vllm", "torch", "sympy", "math_verify", "cot_transfer.serving", "cot_transfer.engine")


def test_client_modules_import_nothing_of_the_server() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {CLIENT_MODULES!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_ONLY!r}"
        f" or any(m == s or m.startswith(s + '.') for s in {SERVER_ONLY!r}))))"
    )
    assert json.loads(run_fresh(probe)) == []
