"""`serve` and `demo` without the server installed, and with paths that do not exist: exit 2, a
message that says what to do, no traceback. Each runs in a fresh interpreter in which the
server's packages are made unimportable (``sys.modules[name] = None``), as in a client-only
install."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "local-cpu.yaml")


def _cli(argv: list[str], *, hidden: tuple[str, ...] = (), cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    probe = (
        "import sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        "from cot_transfer.cli.main import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_without_ray_the_server_commands_name_the_extra(command: str) -> None:
    completed = _cli([command, "--config", CONFIG], hidden=("ray",))
    assert completed.returncode == 2
    assert "cot-transfer[serve,cpu]" in completed.stderr
    assert "ray is missing" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_without_an_engine_serve_names_the_engine_extra() -> None:
    completed = _cli(["serve", "--config", CONFIG], hidden=("vllm",))
    assert completed.returncode == 2
    assert "vllm" in completed.stderr and "cot-transfer[serve,gpu]" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_default_config_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    completed = _cli(["serve"], cwd=tmp_path)
    assert completed.returncode == 2
    assert "no serving config at configs/local-cpu.yaml" in completed.stderr
    assert "--config" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("key", ["grpc_port", "http_port", "metrics_port"])
def test_a_taken_port_is_named_before_ray_starts(key: str, tmp_path: Path) -> None:
    """A configured port another process holds: exit 2 naming the config key, in seconds, where
    Ray's proxy actor would fail a minute in with a traceback (a CI run lost its stack that way)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        data = yaml.safe_load(Path(CONFIG).read_text())
        data.update(grpc_port=0, http_port=0, metrics_port=0)
        data[key] = taken
        config = tmp_path / "serving.yaml"
        config.write_text(yaml.safe_dump(data))
        completed = _cli(["serve", "--config", str(config)])
    assert completed.returncode == 2, completed.stderr
    assert f"{key}: port {taken} on '127.0.0.1' is not free" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_port_check_skips_the_metrics_port_of_a_joined_cluster() -> None:
    from cot_transfer.serving.common.serving_config import ServingConfig
    from cot_transfer.serving.wiring.local import PortUnavailableError, check_ports_free

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        config = ServingConfig.from_yaml(CONFIG).model_copy(
            update={"grpc_port": 0, "http_port": 0, "metrics_port": taken}
        )
        check_ports_free(config, with_metrics_port=False)
        with pytest.raises(PortUnavailableError, match="metrics_port"):
            check_ports_free(config)
