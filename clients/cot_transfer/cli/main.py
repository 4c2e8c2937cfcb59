"""`cot-transfer`: serve the stack locally, run experiments against any address, the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import grpc

from cot_transfer.client import CotTransferClient, RpcFailedError, Sampling
from cot_transfer.domain.transfer import DEFAULT_BASELINE_MAX_POTENTIAL, DEFAULT_UNLOCK_MIN_POTENTIAL, Thresholds
from cot_transfer.experiment.datasets import DatasetError, ProblemRecord, load_problems
from cot_transfer.experiment.report import ReportError, format_unlock_table, write_report
from cot_transfer.experiment.runner import (
    ExperimentSettings,
    RequestTooLargeError,
    RunFolderError,
    resume_inputs,
    run_experiment,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "local-cpu.yaml"
DEMO_PROBLEMS = REPO_ROOT / "datasets" / "testbed-demo.jsonl"
RAY_LOGS = "/tmp/ray/session_latest/logs"
STANDARD_FRACTIONS = tuple(round(0.1 * step, 1) for step in range(11))


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"fractions must be comma-separated numbers: {error}") from None


# Options that change results; `run --resume` takes them from the folder instead.
SETTING_OPTIONS = (
    "problems",
    "limit",
    "fractions",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "grader",
    "tau0",
    "tau",
)


def _add_experiment_options(parser: argparse.ArgumentParser, *, n_default: int) -> None:
    parser.add_argument("--problems", type=Path, help="JSONL file of problems (id, problem, answer)")
    parser.add_argument("--limit", type=int, help="use only the first LIMIT problems")
    parser.add_argument(
        "--fractions",
        type=_fractions,
        help="comma-separated truncation fractions in [0, 1] (0 is always measured); default 0,0.1,...,1",
    )
    parser.add_argument("--n", type=int, help=f"weak-model samples per prefix (default {n_default})")
    parser.add_argument("--temperature", type=float, help="sampling temperature of both models (service default)")
    parser.add_argument("--top-p", type=float, help="nucleus mass of both models (service default)")
    parser.add_argument("--max-tokens", type=int, help="generation budget, the prefix included (service default)")
    parser.add_argument("--seed", type=int, help="sampling seed (unseeded by default)")
    parser.add_argument("--grader", help="answer grader: exact, math or choice (default exact)")
    parser.add_argument("--tau0", type=float, help="unsolved at baseline when potential <= tau0 (default 0)")
    parser.add_argument("--tau", type=float, help="unlocked when potential >= tau (default 0.5)")
    parser.set_defaults(n_default=n_default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cot-transfer", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start Ray Serve + vLLM locally and serve gRPC until interrupted")
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="serving config YAML")

    run = commands.add_parser("run", help="run a transfer experiment against a service")
    run.add_argument("--address", required=True, help="gRPC address HOST:PORT of the service")
    run.add_argument("--application", default="cot_transfer", help="Ray Serve application name")
    run.add_argument(
        "--token-env",
        default="COT_TRANSFER_TOKEN",
        help="environment variable whose value is sent as the bearer token, when set (default COT_TRANSFER_TOKEN)",
    )
    run.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --ca-cert)")
    run.add_argument("--ca-cert", type=Path, help="PEM file of the CA that signed the server's certificate")
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="results folder of a new run")
    target.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR with its own settings")
    _add_experiment_options(run, n_default=16)

    demo = commands.add_parser("demo", help="start the local stack, run a small experiment, print the unlock table")
    demo.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="serving config YAML")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="results folder (replaced)")
    _add_experiment_options(demo, n_default=8)

    report = commands.add_parser("report", help="(re)write report.md, summary.json, results.csv and plots of a run")
    report.add_argument("run_dir", type=Path, help="results folder")
    return parser


def _settings(args: argparse.Namespace) -> ExperimentSettings:
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed)
    return ExperimentSettings(
        fractions=args.fractions if args.fractions is not None else STANDARD_FRACTIONS,
        n=args.n if args.n is not None else args.n_default,
        strong_sampling=sampling,
        weak_sampling=sampling,
        thresholds=Thresholds(
            args.tau0 if args.tau0 is not None else DEFAULT_BASELINE_MAX_POTENTIAL,
            args.tau if args.tau is not None else DEFAULT_UNLOCK_MIN_POTENTIAL,
        ),
        grader=args.grader or "exact",
    )


def _inputs(
    args: argparse.Namespace, default_problems: Path | None
) -> tuple[list[ProblemRecord], ExperimentSettings, Path]:
    if getattr(args, "resume", None) is not None:
        given = [f"--{name.replace('_', '-')}" for name in SETTING_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--resume takes the settings from the run folder; drop {' '.join(given)}")
        return resume_inputs(args.resume)
    problems_path = args.problems or default_problems
    if problems_path is None:
        raise UsageError("--problems is required for a new run")
    problems = load_problems(problems_path)
    if args.limit is not None:
        problems = problems[: args.limit]
    return problems, _settings(args), problems_path.resolve()


class UsageError(Exception):
    """A command line that asks for something inconsistent."""


async def _run(address: str, application: str, args: argparse.Namespace, default_problems: Path | None = None) -> None:
    from tqdm import tqdm

    problems, settings, problems_path = _inputs(args, default_problems)
    out_dir = args.resume if getattr(args, "resume", None) is not None else args.out
    total = len(problems) * len(settings.measured_fractions())
    with tqdm(total=total, unit="prefix", desc="transfer", file=sys.stderr, dynamic_ncols=True) as progress:
        async with CotTransferClient(address, application=application, **_connection(args)) as client:
            summary = await run_experiment(
                client,
                problems,
                settings,
                out_dir,
                problems_path=problems_path,
                resume=getattr(args, "resume", None) is not None,
                on_row=lambda row: progress.update(1),
                on_resume=progress.update,
            )
    print(_headline(summary))
    print(format_unlock_table(summary))
    print(f"results: {out_dir.resolve()} (report.md, summary.json, unlock_rate.png, potential.png, heatmap.png)")


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    """TLS credentials and the bearer token for `run`; the local demo needs neither."""
    options: dict[str, Any] = {}
    if getattr(args, "tls", False) or getattr(args, "ca_cert", None) is not None:
        root = args.ca_cert.read_bytes() if args.ca_cert is not None else None
        options["credentials"] = grpc.ssl_channel_credentials(root_certificates=root)
    token_env = getattr(args, "token_env", None)
    if token_env and os.environ.get(token_env):
        options["token"] = os.environ[token_env]
    return options


def _headline(summary: dict[str, Any]) -> str:
    run = summary.get("run", {})
    strong_rate = summary.get("strong_solve_rate")
    strong = "n/a" if strong_rate is None else f"{strong_rate:.0%}"
    thresholds = summary["thresholds"]
    return (
        f"{run.get('strong_model')} -> {run.get('weak_model')}: {summary['n_problems']} problems,"
        f" n={summary['n_samples']} samples per prefix; strong model solves {strong};"
        f" {summary['baseline_unsolved']} unsolved by the weak model alone"
        f" (potential <= {thresholds['baseline_max_potential']:g} at fraction 0);"
        f" unlocked when potential >= {thresholds['unlock_min_potential']:g}\n"
    )


def _serve(config_path: Path, log_level: str) -> int:
    from cot_transfer.serving.config import ServingConfig
    from cot_transfer.serving.local import start_local

    stack = start_local(ServingConfig.from_yaml(config_path), log_level=log_level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"grpc: {stack.grpc_address}", flush=True)
    print(f"metrics: {stack.metrics_url}", flush=True)
    print(f"logs: {RAY_LOGS} (replica logs; -v shows them here)", flush=True)
    try:
        stop.wait()
    finally:
        print(
            f"shutting down: draining calls in flight (up to {stack.drain_timeout_s:g} s)", file=sys.stderr, flush=True
        )
        drained = stack.shutdown()
        outcome = drained.describe() if drained else "shut down without draining (see the log)"
        print(outcome, file=sys.stderr, flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cot_transfer.serving.config import ServingConfig
    from cot_transfer.serving.local import start_local

    config = ServingConfig.from_yaml(args.config)
    if args.out.exists():
        shutil.rmtree(args.out)
    print("starting Ray Serve with two vLLM engines on CPU (about a minute)...", file=sys.stderr, flush=True)
    stack = start_local(config)
    print(f"grpc: {stack.grpc_address}", flush=True)
    try:
        asyncio.run(_run(stack.grpc_address, stack.application, args, default_problems=DEMO_PROBLEMS))
    finally:
        stack.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "serve":
            return _serve(args.config, "INFO" if args.verbose else "WARNING")
        if args.command == "run":
            asyncio.run(_run(args.address, args.application, args))
            return 0
        if args.command == "report":
            write_report(args.run_dir)
            print(format_unlock_table(json.loads((args.run_dir / "summary.json").read_text())))
            print(f"report: {(args.run_dir / 'report.md').resolve()}")
            return 0
        return _demo(args)
    except RpcFailedError as error:
        print(f"cot-transfer: the service answered {error.code.name}: {error.details}", file=sys.stderr)
        return 1
    except (DatasetError, ReportError, RunFolderError, RequestTooLargeError, UsageError, FileNotFoundError) as error:
        print(f"cot-transfer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
