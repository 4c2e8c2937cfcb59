"""The client-only install: `pip install .` with no extras, in a fresh venv, as a researcher on a laptop.

It must run the client library and the commands that talk to a service or read results, and
it must not bring the server's stack (Ray, vLLM, torch). The venv is built once per session
from a copy of the sources (so the build leaves nothing in the working tree); pip's cache
makes a second run quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.test_report import write_run_folder

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
# What setuptools needs to build the wheel (pyproject's package-dir and readme).
SOURCES = ("pyproject.toml", "README.md", "protos", "domain", "services", "clients")
INSTALL_TIMEOUT_S = 600  # under pytest-timeout's 900 s, so a slow index fails with pip's output
SERVER_ONLY = ("ray", "vllm", "torch")


@dataclass(frozen=True)
class ClientVenv:
    bin: Path

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=300, cwd=cwd, env=_env()
        )


def _env() -> dict[str, str]:
    # Nothing of this checkout may leak in: the venv must see only what pip installed there.
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientVenv]:
    root = tmp_path_factory.mktemp("client-install")
    source = root / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=_env())
    installed = subprocess.run(
        # No byte-compiling: it is most of the install's CPU time, and the checks run each module once.
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=_env(),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield ClientVenv(venv / "bin")


def test_neither_transformers_nor_a_tracker_comes_with_the_client(client_venv: ClientVenv) -> None:
    names = ("transformers", "mlflow", "wandb")
    probe = f"import importlib.util; print([name for name in {names!r} if importlib.util.find_spec(name)])"
    found = client_venv.run("python", "-c", probe)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_the_client_library_imports(client_venv: ClientVenv) -> None:
    imported = client_venv.run(
        "python", "-c", "import cot_transfer.client, cot_transfer.cli.main; print(cot_transfer.client.__file__)"
    )
    assert imported.returncode == 0, imported.stderr
    assert str(REPO) not in imported.stdout  # the installed copy, not this checkout


def test_the_server_stack_is_not_installed(client_venv: ClientVenv) -> None:
    probe = f"import importlib.util; print([name for name in {SERVER_ONLY!r} if importlib.util.find_spec(name)])"
    found = client_venv.run("python", "-c", probe)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_run_help_works(client_venv: ClientVenv) -> None:
    helped = client_venv.run("cot-transfer", "run", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--address" in helped.stdout


def test_report_works_on_a_results_folder(client_venv: ClientVenv, tmp_path: Path) -> None:
    folder = write_run_folder(tmp_path / "run")
    reported = client_venv.run("cot-transfer", "report", str(folder), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert (folder / "report.md").is_file()
    assert (folder / "summary.json").is_file()
    assert (folder / "unlock_rate.png").is_file()


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_the_server_commands_name_the_extra_to_install(client_venv: ClientVenv, command: str, tmp_path: Path) -> None:
    config = str(REPO / "configs" / "local-cpu.yaml")
    refused = client_venv.run("cot-transfer", command, "--config", config, cwd=tmp_path)
    assert refused.returncode == 2
    assert "cot-transfer[serve,cpu]" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_render_names_its_extra_then_needs_only_the_tokenizer(client_venv: ClientVenv, tmp_path: Path) -> None:
    config = str(REPO / "configs" / "local-cpu.yaml")
    argv = ("cot-transfer", "render", "--config", config, "--model", "weak", "--problem", "3+4*2")
    # transformers is not a client dependency: only render needs it, through its extra.
    refused = client_venv.run(*argv, cwd=tmp_path)
    assert refused.returncode == 2 and "cot-transfer[render]" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    # What the render extra adds, as pyproject.toml names it (the wheel itself is already there).
    added = client_venv.run("pip", "install", "-q", "--no-compile", "transformers>=5.16,<5.20", "jinja2>=3.1")
    assert added.returncode == 0, added.stdout + added.stderr
    rendered = client_venv.run(*argv, cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "3+4*2" in rendered.stdout
    assert "tokens" in rendered.stdout
