"""`run --config FILE` and `run --from DIR`: an experiment's settings from a file or an earlier run.

A config file is YAML (or JSON) with one section per topic of `cot-transfer run --help`; every key
is the option's name with ``_`` for ``-`` (``top_p`` for ``--top-p``). Unknown keys are refused,
naming the key. Paths in the file are relative to the file. Flags given on the command line
override the file (and ``--from``'s run); flags left out never do, whatever their default.

``--from DIR`` reads ``DIR/run.json`` (and the problems the folder keeps) and repeats that run
into a new ``--out``, again with the command line's flags on top.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from cot_transfer.domain.answers import grader_names
from cot_transfer.domain.receivers import ANSWER_MODES
from cot_transfer.domain.sampling_plan import MIXTURE_CS, RULES
from cot_transfer.domain.steps import CutMode, StepBoundary
from cot_transfer.experiment.cut_settings import ALL_COMPLETIONS, kept_completions_from_json
from cot_transfer.experiment.dataset_files import is_hub_id
from cot_transfer.experiment.dataset_formats import FORMAT_NAMES
from cot_transfer.experiment.selection import SelectionError, read_ids


class ConfigError(ValueError):
    """A config file or a run folder that cannot give a run's settings; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(choices: Sequence[str]) -> AfterValidator:
    """Refuses a setting that is given but is not one of ``choices``."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


class ServiceSection(_Section):
    address: str | None = None
    application: str | None = None
    token_env: str | None = None
    tls: bool | None = None
    ca_cert: Path | None = None
    deadline: float | None = Field(default=None, gt=0)


class ProblemsSection(_Section):
    # A file or folder (relative to the config file), or a Hub id (``org/name``) read from the cache.
    problems: Path | None = None
    cots: Path | None = None
    format: Annotated[str | None, _one_of(["auto", *FORMAT_NAMES])] = None
    id_field: str | None = None
    problem_field: str | None = None
    answer_field: str | None = None
    split: str | None = None
    revision: str | None = None
    # A list of ids, or a file of them (one a line) relative to the config file.
    ids: tuple[str, ...] | Path | None = None
    sample: int | None = Field(default=None, ge=1)
    limit: int | None = Field(default=None, ge=1)
    group_by: tuple[str, ...] | None = None

    @field_validator("ids", mode="before")
    @classmethod
    def _some_ids(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("names no id")
            # A dataset's integer ids are read as text (its ids are text too).
            return tuple(str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value)
        return value


class SamplingSection(_Section):
    fractions: tuple[float, ...] | None = None
    n: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None

    @field_validator("fractions")
    @classmethod
    def _unit_interval(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and any(not 0.0 <= fraction <= 1.0 for fraction in value):
            raise ValueError("every fraction must be in [0, 1]")
        return value


class GradingSection(_Section):
    grader: Annotated[str | None, _one_of(grader_names())] = None
    tau0: float | None = Field(default=None, ge=0, le=1)
    tau: float | None = Field(default=None, ge=0, le=1)


class ReceiversSection(_Section):
    receivers: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None

    @field_validator("modes")
    @classmethod
    def _known_modes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [mode for mode in value or () if mode not in ANSWER_MODES]
        if unknown:
            raise ValueError(f"unknown answer modes {', '.join(unknown)}; modes: {', '.join(ANSWER_MODES)}")
        return value


class CutSection(_Section):
    cut: Annotated[str | None, _one_of([mode.value for mode in CutMode])] = None
    step_boundary: Annotated[str | None, _one_of([boundary.value for boundary in StepBoundary])] = None
    # A count per row, or "all".
    keep_completions: int | Literal["all"] | None = None

    @field_validator("keep_completions")
    @classmethod
    def _count(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be a count >= 0 or all")
        return value


class AdaptiveSection(_Section):
    adaptive: bool | None = None
    error_rate: float | None = Field(default=None, gt=0, lt=1)
    target_width: float | None = Field(default=None, gt=0, le=1)
    rounds: tuple[int, ...] | None = None
    stopping_rule: Annotated[str | None, _one_of(RULES)] = None

    @field_validator("rounds")
    @classmethod
    def _positive_rounds(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("must be one or more round sizes >= 1")
        return value


class TrackingSection(_Section):
    # One tracker (``mlflow``, ``mlflow:URI``, ``wandb``) or a list of them.
    track: tuple[str, ...] | None = None

    @field_validator("track", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class ExperimentConfig(_Section):
    """Every setting of `cot-transfer run`, by topic. A section or key left out keeps the
    command line's value (or its default)."""

    service: ServiceSection = Field(default_factory=ServiceSection)
    problems: ProblemsSection = Field(default_factory=ProblemsSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    grading: GradingSection = Field(default_factory=GradingSection)
    receivers: ReceiversSection = Field(default_factory=ReceiversSection)
    cut: CutSection = Field(default_factory=CutSection)
    adaptive: AdaptiveSection = Field(default_factory=AdaptiveSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    def values(self, base_dir: Path) -> dict[str, Any]:
        """The settings the file sets, by argparse name, in the form the command line gives them;
        relative paths resolved against ``base_dir`` (the file's folder)."""
        values: dict[str, Any] = {}
        for section_name in type(self).model_fields:
            section: BaseModel = getattr(self, section_name)
            for name in section.model_fields_set:
                value = getattr(section, name)
                if value is None:
                    continue
                if isinstance(value, Path) and not value.is_absolute():
                    local = (base_dir / value).resolve()
                    value = value if name == "problems" and not local.exists() and is_hub_id(value) else local
                if name == "ids" and isinstance(value, Path):
                    value = _ids_in(value)
                if name == "keep_completions":
                    value = ALL_COMPLETIONS if value == "all" else value
                values[name] = value
        return values


def _ids_in(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise ConfigError(f"problems.ids: {path} is no file (give a list of ids, or a file of them)")
    try:
        return read_ids(str(path))
    except (SelectionError, OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"problems.ids: {error}") from None


def load_experiment_config(path: Path) -> dict[str, Any]:
    """The settings ``path`` sets, by argparse name; raises ``ConfigError`` naming the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot be read ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path}: not YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must be a mapping of sections, got {type(data).__name__}")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"--config {path}: {_describe(error)}") from None
    try:
        return config.values(path.resolve().parent)
    except ConfigError as error:
        raise ConfigError(f"--config {path}: {error}") from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r}{_known_keys(item['loc'])}")
        else:
            problems.append(f"{key}: {item['msg']}")
    return "; ".join(problems)


def _known_keys(location: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = ExperimentConfig
    for part in location[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    return f" (known: {', '.join(model.model_fields)})"


def values_from_run(run_dir: Path) -> dict[str, Any]:
    """The settings ``run_dir``'s run.json records, by argparse name (its problems come from the
    folder itself, see ``runner.resume_inputs``); raises ``ConfigError``."""
    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--from {run_dir}: holds no run (run.json is missing)") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"--from {run_dir}: run.json cannot be read: {error}") from None
    try:
        return _run_values(run)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"--from {run_dir}: run.json lacks or garbles a setting: {error!r}") from None


def _run_values(run: dict[str, Any]) -> dict[str, Any]:
    strong, weak = run["strong_sampling"], run["weak_sampling"]
    if strong != weak:
        # The command line gives both models one sampling; a run made through the Python API
        # with two cannot be repeated from it.
        raise ValueError("strong_sampling and weak_sampling differ: repeat it through the Python API")
    values: dict[str, Any] = {
        "fractions": tuple(float(fraction) for fraction in run["fractions"]),
        "n": int(run["n_samples"]),
        "grader": str(run["grader"]),
        "tau0": float(run["thresholds"]["baseline_max_potential"]),
        "tau": float(run["thresholds"]["unlock_min_potential"]),
        "keep_completions": kept_completions_from_json(run.get("keep_completions")),
    }
    for name in ("temperature", "top_p", "max_tokens", "seed"):
        if strong.get(name) is not None:
            values[name] = strong[name]
    for name in ("receivers", "modes"):
        if run.get(name):
            values[name] = tuple(run[name])
    if "cut" in run:
        values["cut"] = str(run["cut"])
        values["step_boundary"] = str(run.get("step_boundary", StepBoundary.LINE.value))
    plan = run.get("sampling_plan")
    if plan is not None:
        values.update(
            adaptive=True,
            rounds=tuple(int(size) for size in plan["rounds"]),
            error_rate=float(plan["error_rate"]),
            stopping_rule=str(plan.get("rule", MIXTURE_CS)),
        )
        if plan.get("target_width") is not None:
            values["target_width"] = float(plan["target_width"])
    dataset = run.get("dataset") or {}
    if dataset.get("group_by"):
        values["group_by"] = tuple(dataset["group_by"])
    return values


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The argparse names of the options ``argv`` actually gives (a default never counts):
    ``argv`` parsed again with every default suppressed."""
    _suppress_defaults(parser)
    return set(vars(parser.parse_args(argv)))


def _suppress_defaults(parser: argparse.ArgumentParser) -> None:
    parser._defaults.clear()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _suppress_defaults(subparser)
        else:
            action.default = argparse.SUPPRESS


def apply_values(args: argparse.Namespace, values: dict[str, Any], given: set[str]) -> None:
    """Sets each of ``values`` on ``args`` unless the command line gave that option."""
    for name, value in values.items():
        if name not in given:
            setattr(args, name, value)


RUN_EXAMPLES = """examples:
  cot-transfer run --address localhost:9000 --problems datasets/testbed-demo.jsonl --out runs/x
  cot-transfer run --config examples/experiment.yaml --out runs/x
  cot-transfer run --config examples/experiment.yaml --n 32 --out runs/x32   (a flag overrides the file)
  cot-transfer run --address localhost:9000 --from runs/x --out runs/y       (the same settings again)
  cot-transfer run --config examples/experiment.yaml --track mlflow --out runs/z   (logged to ./mlruns)
  cot-transfer run --address localhost:9000 --resume runs/x                  (finish an interrupted run)
"""


def resolve_run_arguments(args: argparse.Namespace, given: set[str]) -> None:
    """Fills ``args`` of `run` from ``--config`` or ``--from`` (flags in ``given`` win) and checks
    what must be there once they are merged; raises ``ConfigError``."""
    config, from_run = args.experiment_config, args.from_run
    if args.resume is not None and (config is not None or from_run is not None):
        raise ConfigError("--resume takes every setting from the run folder; drop --config and --from")
    if config is not None and from_run is not None:
        raise ConfigError("--config and --from both give the settings: use one (flags override either)")
    if from_run is not None and args.out is not None and args.out.resolve() == from_run.resolve():
        raise ConfigError("--from and --out name the same folder: --out must be a new one (or use --resume)")
    if config is not None:
        apply_values(args, load_experiment_config(config), given)
    elif from_run is not None:
        apply_values(args, values_from_run(from_run), given)
    if not args.address:
        raise ConfigError("--address is required (or service.address in --config)")
    if args.out is None and args.resume is None:
        raise ConfigError("--out (a new results folder) or --resume DIR is required")


def run_origin(args: argparse.Namespace) -> dict[str, Any]:
    """Where a run's settings came from, for its provenance: the config file or the run repeated."""
    origin: dict[str, Any] = {"interface": "cli"}
    if getattr(args, "experiment_config", None) is not None:
        origin["config"] = str(args.experiment_config.resolve())
    if getattr(args, "from_run", None) is not None:
        origin["from_run"] = str(args.from_run.resolve())
    return origin
