"""`cot-transfer`: serve the stack locally, run experiments against any address, the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from pathlib import Path

from cot_transfer.cli.connection import connection_options as _connection
from cot_transfer.cli.cut_options import add_cut_arguments
from cot_transfer.cli.experiment_config import RUN_EXAMPLES, ConfigError, given_options, resolve_run_arguments
from cot_transfer.cli.plan import PlanError, add_adaptive_options, add_plan_parser, plan_command
from cot_transfer.cli.render import render_command
from cot_transfer.cli.run import (
    SETTING_OPTIONS,
    STANDARD_FRACTIONS,
    UsageError,
    report_command,
    run_command,
)
from cot_transfer.cli.run import headline as _headline
from cot_transfer.cli.run import inputs_from_args as _inputs
from cot_transfer.cli.run import settings_from_args as _settings
from cot_transfer.cli.serve import (
    DEFAULT_CONFIG,
    DEMO_PROBLEMS,
    ServerNotInstalledError,
    ServeStartError,
    demo_command,
    serve_command,
)
from cot_transfer.cli.view import view_command
from cot_transfer.client import RpcFailedError
from cot_transfer.client.client import UNARY_TIMEOUT_S
from cot_transfer.client.keepalive import Keepalive
from cot_transfer.client.loopback import is_loopback
from cot_transfer.client.retry import RUN_RETRY_BUDGET_S
from cot_transfer.domain.answers import grader_names
from cot_transfer.domain.receivers import ANSWER_MODES
from cot_transfer.experiment.datasets import DatasetError, add_dataset_arguments
from cot_transfer.experiment.provenance import tool_version
from cot_transfer.experiment.report import ReportError
from cot_transfer.experiment.runner import RequestTooLargeError, RunFolderError
from cot_transfer.experiment.tracking import TrackingError
from cot_transfer.experiment.view import ViewError

# The command bodies live in cli/run.py and cli/serve.py; these names stay importable from here.
_run = run_command
_serve = serve_command
_demo = demo_command

__all__ = [
    "DEFAULT_CONFIG",
    "DEMO_PROBLEMS",
    "SETTING_OPTIONS",
    "STANDARD_FRACTIONS",
    "UsageError",
    "_connection",
    "_demo",
    "_headline",
    "_inputs",
    "_run",
    "_serve",
    "_settings",
    "build_parser",
    "main",
]


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"fractions must be comma-separated numbers: {error}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _modes(text: str) -> tuple[str, ...]:
    modes = _names(text)
    unknown = [mode for mode in modes if mode not in ANSWER_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown answer modes {', '.join(unknown)}; modes: {', '.join(ANSWER_MODES)}")
    return modes


def _add_experiment_options(parser: argparse.ArgumentParser, *, n_default: int) -> None:
    # Grouped by topic in --help; the sections of an experiment config file (`run --config`).
    problems = parser.add_argument_group("problems")
    sampling = parser.add_argument_group("sampling")
    grading = parser.add_argument_group("grading")
    receivers = parser.add_argument_group("receivers")
    problems.add_argument(
        "--problems",
        type=Path,
        help="problems: a JSONL, JSON, CSV, parquet or Arrow file, a datasets save_to_disk or repository folder,"
        " or a Hub dataset id read from the local cache (--split, --revision)",
    )
    problems.add_argument("--limit", type=int, help="use only the first LIMIT problems (after --ids and --sample)")
    sampling.add_argument(
        "--fractions",
        type=_fractions,
        help="comma-separated truncation fractions in [0, 1] (0 is always measured); default 0,0.1,...,1",
    )
    sampling.add_argument("--n", type=int, help=f"weak-model samples per prefix (default {n_default})")
    sampling.add_argument("--temperature", type=float, help="sampling temperature of both models (service default)")
    sampling.add_argument("--top-p", type=float, help="nucleus mass of both models (service default)")
    sampling.add_argument("--max-tokens", type=int, help="generation budget, the prefix included (service default)")
    sampling.add_argument("--seed", type=int, help="sampling seed (unseeded by default)")
    grading.add_argument("--grader", choices=grader_names(), help="answer grader (default exact)")
    grading.add_argument("--tau0", type=float, help="unsolved at baseline when potential <= tau0 (default 0)")
    grading.add_argument("--tau", type=float, help="unlocked when potential >= tau (default 0.5)")
    receivers.add_argument(
        "--receivers",
        type=_names,
        help="comma-separated served models that complete the prefixes, e.g. testbed-strong,testbed-weak"
        " (the strong model measures its self-potential); default: the weak model",
    )
    receivers.add_argument(
        "--modes",
        type=_modes,
        help="comma-separated answer modes: free (continue the reasoning) and/or force_answer (close the prefix,"
        " answer at once); default free",
    )
    add_dataset_arguments(problems)
    add_cut_arguments(parser.add_argument_group("cuts and imported CoTs"))
    add_adaptive_options(parser.add_argument_group("adaptive sampling"))
    parser.set_defaults(n_default=n_default)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"serving config YAML; model paths in it are relative to the file (default {DEFAULT_CONFIG},"
        " relative to the working directory)",
    )


def add_connection_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The bearer token and TLS options of a command that talks to a service (read by
    ``cot_transfer.cli.connection.connection_options``)."""
    parser.add_argument(
        "--token-env",
        default="COT_TRANSFER_TOKEN",
        help="environment variable whose value is sent as the bearer token, when set (default COT_TRANSFER_TOKEN)",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --ca-cert)")
    parser.add_argument("--ca-cert", type=Path, help="PEM file of the CA that signed the server's certificate")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="send the token in plaintext to an address that is not loopback (refused without this flag:"
        " anyone on the path can read it; prefer --tls)",
    )


def refuse_plaintext_token(args: argparse.Namespace) -> None:
    """Raises ``UsageError`` when the command would send its bearer token unencrypted to another
    machine: plaintext (no --tls or --ca-cert) to an address outside loopback, without --insecure."""
    if not args.address or args.insecure or is_loopback(args.address):
        return
    options = _connection(args)
    if "token" in options and "credentials" not in options:
        raise UsageError(
            f"refusing to send the bearer token (${args.token_env}) in plaintext to {args.address}, which is"
            " not a loopback address: connect with --tls (--ca-cert FILE for a private CA), or pass --insecure"
            " on a network you trust"
        )


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    # Suppressed default: given after the subcommand it sets the flag, left out it keeps the
    # value from before the subcommand.
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log at INFO level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cot-transfer", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {tool_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="start Ray Serve + vLLM locally and serve gRPC until interrupted (needs the server extras)"
    )
    _add_config_option(serve)

    run = commands.add_parser(
        "run",
        help="run a transfer experiment against a service",
        description="Run a transfer experiment against a service into a results folder. Settings come from"
        " the flags, from an experiment config (--config) or from an earlier run (--from); a flag given on"
        " the command line overrides both. Exit status: 0 every problem finished; 1 the service failed"
        " the run; 2 a usage, input or results-folder error; 3 the run ended with problems missing from its"
        " statistics (named on stderr; --resume runs the transient ones again).",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    experiment = run.add_argument_group("experiment")
    experiment.add_argument(
        "--config",
        dest="experiment_config",
        type=Path,
        metavar="FILE",
        help="experiment config (YAML): every setting below by topic, e.g. examples/experiment.yaml",
    )
    experiment.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        metavar="DIR",
        help="repeat the run in DIR (its run.json and problems) into a new --out",
    )
    target = experiment.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="results folder of a new run")
    target.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR with its own settings")
    experiment.add_argument(
        "--track",
        action="append",
        metavar="TRACKER",
        help="log the finished run to mlflow[:URI] (default: the file store mlruns/ in the working directory)"
        " or wandb[:PROJECT] (offline, under the results folder); repeatable; needs the track extra",
    )
    service = run.add_argument_group("service")
    service.add_argument("--address", help="gRPC address HOST:PORT of the service (required)")
    service.add_argument("--application", default="cot_transfer", help="Ray Serve application name")
    add_connection_options(service)
    service.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="deadline of every call (a Transfer.Run stream included); the service aborts the call's engine work"
        " when it passes and the run stops with DEADLINE_EXCEEDED, to be continued with --resume (default: none"
        " for the stream, which keepalive watches instead, and --unary-deadline for the other calls)",
    )
    service.add_argument(
        "--unary-deadline",
        type=_seconds,
        metavar="SECONDS",
        default=UNARY_TIMEOUT_S,
        help=f"deadline of each single-response call such as GetInfo (default {UNARY_TIMEOUT_S:g})",
    )
    service.add_argument(
        "--keepalive",
        type=_seconds,
        metavar="SECONDS",
        default=Keepalive.time_s,
        help="silence on the connection before a ping that checks it is alive (default"
        f" {Keepalive.time_s:g}, the least a gRPC server, Ray Serve's proxy among them, takes unless"
        " configured otherwise: more frequent pings get the connection closed with too_many_pings)",
    )
    service.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=Keepalive.timeout_s,
        help="a ping unanswered this long ends the connection: the run retries on a new one (default"
        f" {Keepalive.timeout_s:g})",
    )
    service.add_argument(
        "--retry-budget",
        type=_seconds,
        metavar="SECONDS",
        default=RUN_RETRY_BUDGET_S,
        help="how long a run keeps retrying when the service is unavailable, at least (capped exponential backoff"
        f" up to 30 s between tries; default {RUN_RETRY_BUDGET_S:g}, time for a GPU model reload)",
    )
    _add_experiment_options(run, n_default=16)

    demo = commands.add_parser(
        "demo",
        help="start the local stack, run a small experiment, print the unlock table (needs the server extras;"
        f" problems default to {DEMO_PROBLEMS} in the working directory)",
    )
    _add_config_option(demo)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="results folder (replaced)")
    _add_experiment_options(demo, n_default=8)

    add_plan_parser(commands, _add_experiment_options, add_connection_options)

    report = commands.add_parser("report", help="(re)write report.md, summary.json, results.csv and plots of a run")
    report.add_argument("run_dir", type=Path, help="results folder")
    add_dataset_arguments(report, reading=False)

    view = commands.add_parser(
        "view", help="write the run's view.html (one self-contained page, no network) and optionally serve it"
    )
    view.add_argument("run_dir", type=Path, help="results folder")
    view.add_argument("--serve", action="store_true", help="serve the folder on 127.0.0.1 until interrupted")
    view.add_argument("--port", type=int, default=0, help="with --serve: the port (default: a free one)")

    render = commands.add_parser(
        "render", help="print the exact prompt a model would receive, and its token count (loads the tokenizer only)"
    )
    _add_config_option(render)
    render.add_argument("--model", choices=("strong", "weak"), required=True, help="which model's prompt")
    render.add_argument("--problem", required=True, help="the problem text")
    render.add_argument("--prefix", help="a received reasoning prefix (the weak model's prompt with it)")
    for subparser in commands.choices.values():
        _add_verbose(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "serve":
            return serve_command(args.config, "INFO" if args.verbose else "WARNING")
        if args.command == "run":
            resolve_run_arguments(args, given_options(build_parser(), argv))
            refuse_plaintext_token(args)
            return asyncio.run(run_command(args.address, args.application, args))
        if args.command == "plan":
            refuse_plaintext_token(args)
            return plan_command(args)
        if args.command == "report":
            return report_command(args.run_dir, args.group_by or ())
        if args.command == "render":
            return render_command(args.config, args.model, args.problem, args.prefix)
        if args.command == "view":
            return view_command(args.run_dir, serve=args.serve, port=args.port)
        return demo_command(args)
    except RpcFailedError as error:
        print(f"cot-transfer: the service answered {error.code.name}: {error.details}", file=sys.stderr)
        return 1
    except (
        DatasetError,
        ReportError,
        RunFolderError,
        RequestTooLargeError,
        UsageError,
        PlanError,
        ServerNotInstalledError,
        ServeStartError,
        FileNotFoundError,
        ViewError,
        ConfigError,
        TrackingError,
    ) as error:
        print(f"cot-transfer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
