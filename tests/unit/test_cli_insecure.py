"""The CLI never sends the bearer token in plaintext to another machine unless told to
(`--insecure`); loopback, TLS and token-less commands go on. `run`'s keepalive and deadline flags
reach the client."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from cot_transfer.cli import main as cli_main
from cot_transfer.cli import run as cli_run
from cot_transfer.cli.main import build_parser, main
from cot_transfer.cli.run import transport_options
from cot_transfer.client import Keepalive
from cot_transfer.client.client import UNARY_TIMEOUT_S
from cot_transfer.client.loopback import is_loopback

REMOTE = "10.1.2.3:9000"
PROBLEMS = Path(__file__).resolve().parents[2] / "datasets" / "testbed-demo.jsonl"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands that got past the check; the token is set, nothing connects."""
    monkeypatch.setenv("COT_TRANSFER_TOKEN", "secret")
    calls: list[str] = []

    async def run_command(address: str, application: str, args: argparse.Namespace) -> int:
        calls.append("run")
        return 0

    def plan_command(args: argparse.Namespace) -> int:
        calls.append("plan")
        return 0

    monkeypatch.setattr(cli_main, "run_command", run_command)
    monkeypatch.setattr(cli_main, "plan_command", plan_command)
    return calls


def run_args(address: str, *extra: str) -> list[str]:
    return ["run", "--address", address, "--problems", str(PROBLEMS), "--out", "unused", *extra]


def plan_args(address: str, *extra: str) -> list[str]:
    return ["plan", "--num-problems", "5", "--cot-tokens", "100", "--address", address, *extra]


@pytest.mark.parametrize("argv", [run_args(REMOTE), plan_args(REMOTE)], ids=["run", "plan"])
def test_a_token_in_plaintext_to_another_machine_is_refused_naming_the_ways_out(
    started: list[str], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert started == []
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for named in ("--insecure", "--tls", "--ca-cert", REMOTE, "$COT_TRANSFER_TOKEN"):
        assert named in err
    assert "secret" not in err


@pytest.mark.parametrize(
    "argv",
    [
        run_args(REMOTE, "--insecure"),
        plan_args(REMOTE, "--insecure"),
        run_args(REMOTE, "--tls"),
        run_args("127.0.0.1:9000"),
        run_args("localhost:9000"),
        run_args("[::1]:9000"),
        plan_args("127.0.0.1:9000"),
    ],
    ids=["run-insecure", "plan-insecure", "tls", "ipv4-loopback", "localhost", "ipv6-loopback", "plan-loopback"],
)
def test_insecure_tls_and_loopback_go_on(started: list[str], argv: list[str]) -> None:
    assert main(argv) == 0
    assert started == [argv[0]]


def test_no_token_no_refusal(started: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COT_TRANSFER_TOKEN")
    assert main(run_args(REMOTE)) == 0
    assert started == ["run"]


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("127.0.0.1:9000", True),
        ("127.8.9.10:1", True),
        ("[::1]:9000", True),
        ("[::ffff:127.0.0.1]:9000", True),
        ("localhost:9000", True),
        ("LocalHost.:9000", True),
        ("dns:///localhost:9000", True),
        ("dns://8.8.8.8/127.0.0.1:9000", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("ipv6:[::1]:9000", True),
        ("unix:/run/cot-transfer.sock", True),
        (REMOTE, False),
        ("0.0.0.0:9000", False),
        ("cot-transfer.example.com:443", False),
        ("localhost.example.com:9000", False),
        ("[2001:db8::1]:9000", False),
        ("[::ffff:10.0.0.1]:9000", False),
        ("dns:///cot-transfer.example.com:443", False),
        ("ipv4:127.0.0.1:1,10.0.0.1:2", False),
    ],
)
def test_which_targets_are_loopback(target: str, loopback: bool) -> None:
    assert is_loopback(target) is loopback


def test_run_flags_set_the_clients_keepalive_and_unary_deadline() -> None:
    args = build_parser().parse_args(
        [*run_args(REMOTE), "--keepalive", "600", "--keepalive-timeout", "5", "--unary-deadline", "30"]
    )
    assert transport_options(args) == {"unary_timeout_s": 30.0, "keepalive": Keepalive(time_s=600.0, timeout_s=5.0)}


@pytest.mark.parametrize(
    "args",
    [build_parser().parse_args(run_args(REMOTE)), build_parser().parse_args(["demo"])],
    ids=["run", "demo"],
)
def test_without_the_flags_the_client_defaults_hold(args: argparse.Namespace) -> None:
    assert transport_options(args) == {"unary_timeout_s": UNARY_TIMEOUT_S, "keepalive": Keepalive()}


async def test_run_hands_its_transport_options_and_retry_budget_to_the_client_and_runner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    class Client:
        def __init__(self, address: str, **options: Any) -> None:
            seen["client"] = options

        async def __aenter__(self) -> Client:
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    class SeenError(Exception):
        pass

    async def run_experiment(client: Client, *args: Any, **options: Any) -> dict[str, Any]:
        seen["retry"] = options["retry"]
        raise SeenError

    monkeypatch.setattr(cli_run, "CotTransferClient", Client)
    monkeypatch.setattr(cli_run, "run_experiment", run_experiment)
    argv = run_args("127.0.0.1:1", "--keepalive", "400", "--unary-deadline", "45", "--retry-budget", "1200")
    argv[argv.index("unused")] = str(tmp_path / "run")
    args = build_parser().parse_args(argv)
    with pytest.raises(SeenError):
        await cli_run.run_command(args.address, args.application, args)
    assert seen["client"]["keepalive"] == Keepalive(time_s=400.0)
    assert seen["client"]["unary_timeout_s"] == 45.0
    assert seen["retry"].min_total_pause_s() >= 1200
