"""`cot-transfer run` and `report`: an experiment against a service, and the report of a results folder.

Nothing here needs the server's packages: a plain `pip install cot-transfer` runs these.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cot_transfer.cli.connection import connection_options
from cot_transfer.cli.cut_options import CUT_SETTING_OPTIONS, kept_completions_of
from cot_transfer.cli.experiment_config import run_origin
from cot_transfer.cli.plan import ADAPTIVE_SETTING_OPTIONS, PlanError, sampling_plan_from_args
from cot_transfer.client import CotTransferClient, Keepalive, RetryPolicy, Sampling
from cot_transfer.client.client import UNARY_TIMEOUT_S
from cot_transfer.client.retry import RUN_RETRY_BUDGET_S
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.steps import CutMode
from cot_transfer.domain.transfer import DEFAULT_BASELINE_MAX_POTENTIAL, DEFAULT_UNLOCK_MIN_POTENTIAL, Thresholds
from cot_transfer.experiment.datasets import (
    DATASET_OPTIONS,
    SelectionError,
    choose,
    dataset_options_from_args,
    load_problems,
)
from cot_transfer.experiment.imported_cots import load_cots
from cot_transfer.experiment.receivers_report import receivers_lines
from cot_transfer.experiment.report import format_unlock_table, write_report
from cot_transfer.experiment.runner import ExperimentSettings, resume_inputs, run_experiment
from cot_transfer.experiment.settings import STANDARD_FRACTIONS
from cot_transfer.experiment.tracking import check_installed, parse_tracker, track_run

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
    "receivers",
    "modes",
    *CUT_SETTING_OPTIONS,
    *ADAPTIVE_SETTING_OPTIONS,
    *DATASET_OPTIONS,
)


class UsageError(Exception):
    """A command line that asks for something inconsistent."""


def settings_from_args(args: argparse.Namespace) -> ExperimentSettings:
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed)
    n = args.n if args.n is not None else args.n_default
    try:
        sampling_plan = sampling_plan_from_args(args, n)  # --adaptive: n is the plan's n_max
    except PlanError as error:
        raise UsageError(str(error)) from error
    return ExperimentSettings(
        fractions=args.fractions if args.fractions is not None else STANDARD_FRACTIONS,
        n=n,
        sampling_plan=sampling_plan,
        strong_sampling=sampling,
        weak_sampling=sampling,
        thresholds=Thresholds(
            args.tau0 if args.tau0 is not None else DEFAULT_BASELINE_MAX_POTENTIAL,
            args.tau if args.tau is not None else DEFAULT_UNLOCK_MIN_POTENTIAL,
        ),
        grader=args.grader or "exact",
        receivers=getattr(args, "receivers", None) or (),
        modes=getattr(args, "modes", None) or (),
        cut=getattr(args, "cut", None) or "token",
        step_boundary=getattr(args, "step_boundary", None) or "line",
        keep_completions=kept_completions_of(args),
    )


def inputs_from_args(
    args: argparse.Namespace, default_problems: Path | None
) -> tuple[list[Problem], ExperimentSettings, Path]:
    if getattr(args, "resume", None) is not None:
        given = [f"--{name.replace('_', '-')}" for name in SETTING_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--resume takes the settings from the run folder; drop {' '.join(given)}")
        return resume_inputs(args.resume)
    cots = getattr(args, "cots", None)
    from_run = getattr(args, "from_run", None)
    problems_path: Path | None
    if from_run is not None and cots is None and args.problems is None:
        # `--from DIR`: the problems DIR's run used, as the folder keeps them.
        problems, _, problems_path = resume_inputs(from_run)
    elif cots is not None:
        if args.problems is not None:
            raise UsageError("--cots brings its own problems; drop --problems")
        problems = load_cots(cots)
        problems_path = cots
    else:
        problems_path = args.problems or default_problems
        if problems_path is None:
            raise UsageError("--problems (or --cots) is required for a new run")
        problems = load_problems(problems_path, dataset_options_from_args(args))
    try:
        problems = choose(problems, dataset_options_from_args(args))  # --ids, --sample, --limit (--from: its problems)
    except SelectionError as error:
        raise UsageError(str(error)) from None
    # A Hub id (`org/name`) is no path to resolve.
    return problems, settings_from_args(args), problems_path.resolve() if problems_path.exists() else problems_path


# `cot-transfer run`'s exit status when the run ends with problems missing from its statistics.
INCOMPLETE_EXIT = 3


def transport_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client's keepalive and unary deadline from `run`'s flags (the demo has none: defaults)."""
    return {
        "unary_timeout_s": getattr(args, "unary_deadline", UNARY_TIMEOUT_S),
        "keepalive": Keepalive(
            time_s=getattr(args, "keepalive", Keepalive.time_s),
            timeout_s=getattr(args, "keepalive_timeout", Keepalive.timeout_s),
        ),
    }


def run_retry(args: argparse.Namespace) -> RetryPolicy:
    """How long the run retries a service that is unavailable (``--retry-budget``)."""
    return RetryPolicy.lasting(getattr(args, "retry_budget", RUN_RETRY_BUDGET_S))


async def run_command(
    address: str, application: str, args: argparse.Namespace, default_problems: Path | None = None
) -> int:
    """Runs (or resumes) the experiment ``args`` describe, with a progress bar, and prints its table.
    Returns the exit status: 0 when every problem has all its rows, else ``INCOMPLETE_EXIT``
    (the unfinished problems are named on stderr)."""
    from tqdm import tqdm

    trackers = [parse_tracker(text) for text in getattr(args, "track", None) or ()]
    check_installed(trackers)  # before the run, not after it
    problems, settings, problems_path = inputs_from_args(args, default_problems)
    out_dir = args.resume if getattr(args, "resume", None) is not None else args.out
    # Every-step and search runs learn a problem's cuts (and a search its rows) only as it runs:
    # the bar counts rows without a total rather than pass 100%.
    every_step = CutMode(settings.cut).cuts_every_step
    total = None if every_step else len(problems) * len(settings.measured_fractions()) * len(settings.receiver_modes())
    with tqdm(total=total, unit="prefix", desc="transfer", file=sys.stderr, dynamic_ncols=True) as progress:
        async with CotTransferClient(
            address, application=application, **connection_options(args), **transport_options(args)
        ) as client:
            summary = await run_experiment(
                client,
                problems,
                settings,
                out_dir,
                problems_path=problems_path,
                dataset=dataset_options_from_args(args),
                resume=getattr(args, "resume", None) is not None,
                on_row=lambda row: progress.update(1),
                on_resume=progress.update,
                origin=run_origin(args),
                retry=run_retry(args),
            )
    print(headline(summary))
    print(format_unlock_table(summary))
    for line in receivers_lines(summary):
        print(line)
    for failed in summary.get("failed_problems", []):
        again = "final, kept on --resume" if failed["permanent"] else "--resume runs it again"
        print(f"problem {failed['problem_id']!r} could not be run: {failed['code']} {failed['message']} ({again})")
    print(f"results: {out_dir.resolve()} (report.md, summary.json, results.parquet, plots)")
    print(f"viewer: {(out_dir / 'view.html').resolve()} (or: cot-transfer view {out_dir} --serve)")
    for place in track_run(out_dir, trackers):
        print(f"tracked: {place}")
    return incomplete_status(summary, out_dir)


def incomplete_status(summary: dict[str, Any], out_dir: Path) -> int:
    """``INCOMPLETE_EXIT`` naming the unfinished problems on stderr, or 0: a script that checks the
    exit status never takes a partial run's statistics for the whole experiment's."""
    unfinished = summary.get("unfinished_problems") or []
    if not unfinished:
        return 0
    failed = {item["problem_id"]: item for item in summary.get("failed_problems", [])}
    transient = [pid for pid in unfinished if not failed.get(pid, {}).get("permanent", False)]
    shown = ", ".join(repr(pid) for pid in unfinished[:20]) + (" ..." if len(unfinished) > 20 else "")
    print(
        f"cot-transfer: the run ended incomplete: {len(unfinished)} of the problems are missing from the"
        f" statistics: {shown}."
        + (f" `cot-transfer run --resume {out_dir}` runs the {len(transient)} not final again." if transient else ""),
        file=sys.stderr,
    )
    return INCOMPLETE_EXIT


def report_command(run_dir: Path, group_by: tuple[str, ...] = ()) -> int:
    write_report(run_dir, group_by=group_by)
    print(format_unlock_table(json.loads((run_dir / "summary.json").read_text())))
    print(f"report: {(run_dir / 'report.md').resolve()}")
    return 0


def headline(summary: dict[str, Any]) -> str:
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
