"""`run --config` and `run --from`: the typed config file, refusal of unknown keys, flags over the
file (only flags actually given), a run's settings read back from its run.json, and the parser's
`-v` anywhere, `--version` and checked choices."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cot_transfer.cli.experiment_config import (
    ConfigError,
    given_options,
    load_experiment_config,
    resolve_run_arguments,
    values_from_run,
)
from cot_transfer.cli.main import build_parser, main
from cot_transfer.cli.run import UsageError, inputs_from_args, settings_from_args
from cot_transfer.client import Sampling
from cot_transfer.domain.requests import Problem
from cot_transfer.domain.sampling_plan import MIXTURE_CS, SamplingPlan
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.experiment.datasets import RUN_PROBLEMS_FILE, Selection, dataset_options_from_args, write_problems
from cot_transfer.experiment.provenance import tool_version
from cot_transfer.experiment.runner import ExperimentSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "experiment.yaml"


def run_args(argv: list[str]) -> argparse.Namespace:
    """`run` parsed and merged exactly as `cot-transfer` does it."""
    args = build_parser().parse_args(argv)
    resolve_run_arguments(args, given_options(build_parser(), argv))
    return args


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_shipped_example_reads_and_its_problems_exist() -> None:
    values = load_experiment_config(EXAMPLE)
    assert values["address"] == "127.0.0.1:9000"
    assert values["problems"] == (REPO / "datasets" / "testbed-demo.jsonl").resolve()
    assert values["problems"].is_file()
    assert values["n"] == 8 and values["grader"] == "exact"
    assert values["fractions"][0] == 0.0 and values["fractions"][-1] == 1.0


def test_a_file_sets_every_topic_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    config = write(
        tmp_path / "sub.yaml",
        """
service: {address: "h:1", application: app, deadline: 30}
problems: {problems: data/p.jsonl, limit: 3, format: math, group_by: [level]}
sampling: {fractions: [0, 0.5, 1], n: 4, temperature: 0.7, top_p: 0.9, max_tokens: 99, seed: 3}
grading: {grader: math, tau0: 0.1, tau: 0.6}
receivers: {receivers: [a, b], modes: [free, force_answer]}
cut: {cut: step, step_boundary: sentence, keep_completions: all}
adaptive: {adaptive: true, error_rate: 0.01, rounds: [4, 8], stopping_rule: mixture_cs}
""",
    )
    args = run_args(["run", "--config", str(config), "--out", str(tmp_path / "out")])
    assert args.problems == tmp_path / "data" / "p.jsonl"
    assert (args.address, args.application, args.deadline, args.limit) == ("h:1", "app", 30, 3)
    settings = settings_from_args(args)
    assert settings.measured_fractions() == (0.0, 0.5, 1.0)
    assert settings.strong_sampling == Sampling(temperature=0.7, top_p=0.9, max_tokens=99, seed=3)
    assert settings.thresholds == Thresholds(0.1, 0.6)
    assert (settings.grader, settings.receivers, settings.modes) == ("math", ("a", "b"), ("free", "force_answer"))
    assert (settings.cut, settings.step_boundary, settings.keep_completions) == ("step", "sentence", -1)
    assert settings.sampling_plan == SamplingPlan(n_max=4, rounds=(4, 8), error_rate=0.01, rule=MIXTURE_CS)


def test_the_file_sets_the_dataset_and_the_selection(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """
service: {address: "h:1"}
problems: {problems: math500, split: test, revision: v2, ids: [a, 7], sample: 5, limit: 4, group_by: [level]}
sampling: {seed: 11}
""",
    )
    options = dataset_options_from_args(run_args(["run", "--config", str(config), "--out", "o"]))
    assert (options.split, options.revision, options.group_by) == ("test", "v2", ("level",))
    # Integer ids in the file are the dataset's ids as text; the sample is drawn with sampling.seed.
    assert options.selection == Selection(ids=("a", "7"), sample=5, seed=11, limit=4)


def test_ids_may_be_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    write(tmp_path / "lists" / "ids.txt", "# chosen\nx\n\ny\n")
    config = write(tmp_path / "c.yaml", "service: {address: 'h:1'}\nproblems: {ids: lists/ids.txt}\n")
    assert run_args(["run", "--config", str(config), "--out", "o"]).ids == ("x", "y")
    missing = write(tmp_path / "m.yaml", "problems: {ids: lists/none.txt}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: problems\.ids: .*none\.txt is no file"):
        load_experiment_config(missing)


def test_selection_flags_given_override_the_file_and_only_those(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "service: {address: 'h:1'}\nproblems: {split: test, revision: v2, ids: [a, b], sample: 5, limit: 4}\n",
    )
    argv = ["run", "--config", str(config), "--out", "o", "--sample", "2", "--ids", "c,d", "--split", "train"]
    args = run_args(argv)
    assert (args.sample, args.ids, args.split) == (2, ("c", "d"), "train")
    assert (args.revision, args.limit) == ("v2", 4)


def test_a_hub_id_in_the_file_is_not_taken_for_a_path(tmp_path: Path) -> None:
    hub = write(tmp_path / "hub.yaml", "problems: {problems: HuggingFaceH4/MATH-500, split: test}\n")
    assert load_experiment_config(hub)["problems"] == Path("HuggingFaceH4/MATH-500")
    # A folder of that shape next to the file is the file's, as any relative path is.
    (tmp_path / "org" / "name").mkdir(parents=True)
    local = write(tmp_path / "local.yaml", "problems: {problems: org/name}\n")
    assert load_experiment_config(local)["problems"] == tmp_path / "org" / "name"


def test_trackers_come_from_the_file_one_or_several(tmp_path: Path) -> None:
    one = write(tmp_path / "one.yaml", "service: {address: 'h:1'}\ntracking: {track: mlflow}\n")
    assert run_args(["run", "--config", str(one), "--out", "o"]).track == ("mlflow",)
    two = write(tmp_path / "two.yaml", "service: {address: 'h:1'}\ntracking: {track: [mlflow, wandb]}\n")
    assert run_args(["run", "--config", str(two), "--out", "o"]).track == ("mlflow", "wandb")
    assert run_args(["run", "--config", str(two), "--out", "o", "--track", "wandb"]).track == ["wandb"]


def test_only_flags_actually_given_override_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "service: {address: 'h:1', application: mine}\nsampling: {n: 4, seed: 1}\n")
    args = run_args(["run", "--config", str(config), "--out", "o", "--n", "32", "--address", "other:2"])
    assert (args.n, args.seed, args.address) == (32, 1, "other:2")
    # --application has a default on the command line: left out, it must not undo the file's.
    assert args.application == "mine"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("sampling: {n: 4, temprature: 0.5}\n", "'sampling.temprature'"),
        ("smapling: {n: 4}\n", "'smapling'"),
        ("grading: {grader: fuzzy}\n", "grading.grader: Value error, must be one of choice, exact, math"),
        ("sampling: {n: 0}\n", "sampling.n"),
        ("sampling: {fractions: [0, 1.5]}\n", "sampling.fractions"),
        ("cut: {cut: paragraph}\n", "cut.cut"),
        ("receivers: {modes: [shout]}\n", "receivers.modes"),
        ("problems: {sample: 0}\n", "problems.sample"),
        ("problems: {ids: []}\n", "problems.ids"),
        ("problems: {splt: test}\n", "'problems.splt'"),
        ("- a list\n", "must be a mapping of sections"),
        ("sampling: {n: [\n", "not YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    config = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as refused:
        load_experiment_config(config)
    assert named in str(refused.value)
    assert str(config) in str(refused.value)


def test_an_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'sampling.temprature' \(known: fractions, n, temperature"):
        load_experiment_config(write(tmp_path / "c.yaml", "sampling: {temprature: 1}\n"))


def test_the_command_refuses_a_bad_file_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "c.yaml", "sampling: {nn: 4}\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "unknown key 'sampling.nn'" in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--out", "o"], "--address is required"),
        (["run", "--address", "h:1"], "--out (a new results folder) or --resume DIR is required"),
        (["run", "--address", "h:1", "--resume", "r", "--config", "c.yaml"], "--resume takes every setting"),
        (["run", "--address", "h:1", "--out", "o", "--config", "c.yaml", "--from", "r"], "use one"),
        (["run", "--address", "h:1", "--out", "r", "--from", "r"], "same folder"),
    ],
)
def test_inconsistent_command_lines_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        run_args(argv)
    assert message in str(refused.value)


SETTINGS = [
    ExperimentSettings(fractions=(0.0, 0.25, 1.0), n=16),
    ExperimentSettings(
        fractions=(0.0, 0.5, 1.0),
        n=12,
        strong_sampling=Sampling(temperature=0.6, top_p=0.95, max_tokens=300, seed=9),
        weak_sampling=Sampling(temperature=0.6, top_p=0.95, max_tokens=300, seed=9),
        thresholds=Thresholds(0.125, 0.75),
        grader="math",
        receivers=("testbed-strong", "testbed-weak"),
        modes=("free", "force_answer"),
        cut="step",
        step_boundary="sentence",
        keep_completions=0,
        sampling_plan=SamplingPlan(n_max=12, rounds=(4, 8), error_rate=0.02, target_width=0.3),
    ),
    ExperimentSettings(fractions=(0.0, 1.0), n=2, cut="every_step", keep_completions=True),
    ExperimentSettings(fractions=(0.0, 1.0), n=6, sampling_plan=SamplingPlan(n_max=6, rounds=(2,), rule=MIXTURE_CS)),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_from_a_run_repeats_its_settings_exactly(tmp_path: Path, settings: ExperimentSettings) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    run = {**settings.to_json(), "dataset": {"format": "auto", "group_by": ["level"]}, "problem_ids": ["a"]}
    (run_dir / "run.json").write_text(json.dumps(run))
    args = run_args(["run", "--address", "h:1", "--from", str(run_dir), "--out", str(tmp_path / "y")])
    assert settings_from_args(args).to_json() == settings.to_json()
    assert args.group_by == ("level",)


def test_from_a_run_with_a_flag_on_top(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(SETTINGS[1].to_json()))
    argv = ["run", "--address", "h:1", "--from", str(run_dir), "--out", "y", "--n", "40", "--grader", "exact"]
    repeated = settings_from_args(run_args(argv))
    assert (repeated.n, repeated.grader) == (40, "exact")
    assert repeated.sampling_plan is not None and repeated.sampling_plan.n_max == 40
    assert repeated.thresholds == SETTINGS[1].thresholds and repeated.cut == "step"


def test_from_refuses_a_folder_without_a_run_and_two_samplings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run\.json is missing"):
        values_from_run(tmp_path)
    settings = ExperimentSettings(fractions=(0.0, 1.0), n=2, strong_sampling=Sampling(temperature=0.1))
    (tmp_path / "run.json").write_text(json.dumps(settings.to_json()))
    with pytest.raises(ConfigError, match="strong_sampling and weak_sampling differ"):
        values_from_run(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "run", "--address", "h:1", "--out", "o"],
        ["run", "-v", "--address", "h:1", "--out", "o"],
        ["run", "--address", "h:1", "--out", "o", "--verbose"],
        ["report", "runs/x", "-v"],
    ],
)
def test_verbose_is_accepted_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True


def test_verbose_is_off_unless_given() -> None:
    assert build_parser().parse_args(["run", "--address", "h:1", "--out", "o"]).verbose is False


def test_version_and_checked_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"cot-transfer {tool_version()}"
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", "--address", "h:1", "--out", "o", "--grader", "fuzzy"])
    assert exited.value.code == 2
    assert "invalid choice: 'fuzzy'" in capsys.readouterr().err


def test_help_is_grouped_by_topic_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for title in ("experiment:", "service:", "problems:", "sampling:", "grading:", "receivers:", "adaptive sampling:"):
        assert title in text
    assert "cot-transfer run --config examples/experiment.yaml --out runs/x" in text


def test_from_a_run_chooses_among_its_kept_problems(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    problems = [Problem(f"p{index}", f"q{index}", str(index), {"level": index % 2}) for index in range(6)]
    write_problems(problems, run_dir / RUN_PROBLEMS_FILE)
    run = {**SETTINGS[0].to_json(), "problem_ids": [problem.id for problem in problems]}
    (run_dir / "run.json").write_text(json.dumps(run))
    base = ["run", "--address", "h:1", "--from", str(run_dir), "--out", str(tmp_path / "y")]

    def chosen(*flags: str) -> list[str]:
        return [problem.id for problem in inputs_from_args(run_args([*base, *flags]), None)[0]]

    assert chosen() == [problem.id for problem in problems]
    assert chosen("--ids", "p4,p1") == ["p1", "p4"]
    assert chosen("--limit", "2") == ["p0", "p1"]
    sampled = chosen("--sample", "4", "--seed", "3", "--group-by", "level")
    assert sampled == chosen("--sample", "4", "--seed", "3", "--group-by", "level") and len(sampled) == 4
    assert sum(int(problem_id[1:]) % 2 for problem_id in sampled) == 2  # two of each level
    with pytest.raises(UsageError, match="'zz'"):
        chosen("--ids", "zz")
