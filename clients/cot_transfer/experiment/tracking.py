"""`run --track mlflow[:URI]` and `--track wandb[:PROJECT]`: a finished results folder logged to an
experiment tracker.

What is logged, for either tracker:

* parameters: the run's settings from ``run.json`` (flattened, ``strong_sampling.temperature``),
  the models, the settings hash and the number of problems;
* per-fraction metrics, ``step`` = the fraction's index (the fraction itself is the metric
  ``fraction``): every number of ``summary.json``'s ``per_fraction`` entries (unlock rate, true
  unlock rate when the summary has it, mean potential, counts; intervals as ``_low`` / ``_high``),
  and in a run of several receivers each (receiver, mode) block's as ``<receiver>/<mode>/<name>``;
* artifacts: ``run.json``, ``summary.json``, ``report.md``, ``results.csv``, the figures and
  ``view.html``, those present.

MLflow: URI as MLflow takes it (``http://...``, ``sqlite:///mlflow.db``, ``file:///...``) or a
folder; without one, the file store ``mlruns/`` in the working directory, which every run started
there shares (``mlflow ui`` in that directory shows them side by side). MLflow 3 keeps file stores
in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; it is allowed here for a store given as a
folder or ``file:``. The experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``cot-transfer``.

W&B: always offline (``WANDB_MODE=offline``, nothing leaves the machine); the offline run is
written under the results folder (``<out>/wandb/offline-run-*``; ``wandb sync`` uploads it later).
The project is PROJECT or ``WANDB_PROJECT`` or ``cot-transfer``.

Neither package is needed unless used: ``pip install 'cot-transfer[track]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

EXTRA = "track"
DEFAULT_NAME = "cot-transfer"
DEFAULT_MLFLOW_STORE = "mlruns"
# Files of a results folder logged as artifacts, when present; and every figure.
ARTIFACT_FILES = ("run.json", "summary.json", "report.md", "results.csv", "view.html")
FIGURE_SUFFIXES = (".png", ".svg")
TRACKERS = ("mlflow", "wandb")
# MLflow's log_batch limits per call.
_MLFLOW_PARAMS_PER_BATCH = 100
_MLFLOW_METRICS_PER_BATCH = 1000
_MLFLOW_PARAM_CHARS = 6000


class TrackingError(Exception):
    """A tracker that cannot be used as asked (unknown, or its package not installed)."""


@dataclass(frozen=True)
class Tracker:
    """``kind`` "mlflow" or "wandb"; ``target`` the MLflow URI or the W&B project ("" for the default)."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def parse_tracker(text: str) -> Tracker:
    """``mlflow``, ``mlflow:URI``, ``wandb`` or ``wandb:PROJECT``; raises ``TrackingError``."""
    kind, _, target = text.partition(":")
    if kind not in TRACKERS:
        raise TrackingError(f"--track {text!r}: the trackers are mlflow[:URI] and wandb[:PROJECT]")
    return Tracker(kind, target)


def check_installed(trackers: Sequence[Tracker]) -> None:
    """Refuses, before any work, a tracker whose package is missing, naming the extra."""
    for tracker in trackers:
        if importlib.util.find_spec(tracker.kind) is None:
            raise TrackingError(
                f"--track {tracker.kind} needs the {tracker.kind} package: pip install 'cot-transfer[{EXTRA}]'"
            )


def track_run(out_dir: Path, trackers: Sequence[Tracker]) -> list[str]:
    """Logs the finished results folder ``out_dir`` to each tracker; returns where each run went."""
    check_installed(trackers)
    record = RunRecord.read(out_dir)
    places = []
    for tracker in trackers:
        if tracker.kind == "mlflow":
            places.append(_log_mlflow(record, tracker.target))
        else:
            places.append(_log_wandb(record, tracker.target))
    return places


@dataclass(frozen=True)
class RunRecord:
    """What a tracker gets from a results folder."""

    name: str
    params: dict[str, str]
    tags: dict[str, str]
    steps: list[dict[str, float]]
    artifacts: list[Path]

    @classmethod
    def read(cls, out_dir: Path) -> RunRecord:
        run = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
        artifacts = [out_dir / name for name in ARTIFACT_FILES if (out_dir / name).is_file()]
        artifacts += sorted(path for path in out_dir.iterdir() if path.suffix in FIGURE_SUFFIXES and path.is_file())
        return cls(
            name=out_dir.resolve().name,
            params=run_params(run),
            tags=run_tags(run, out_dir),
            steps=fraction_metrics(summary),
            artifacts=artifacts,
        )


def run_params(run: Mapping[str, Any]) -> dict[str, str]:
    """The run's settings as flat parameters; the problems by count, the provenance left to tags."""
    settings = {key: value for key, value in run.items() if key not in ("provenance", "problem_ids")}
    params = _flatten(settings)
    params["n_problems"] = str(len(run.get("problem_ids", ())))
    return params


def run_tags(run: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    provenance = run.get("provenance") or {}
    tool = provenance.get("tool") or {}
    tags = {
        "cot_transfer.results_folder": str(out_dir.resolve()),
        "cot_transfer.settings_hash": str(run.get("settings_hash", "")),
        "cot_transfer.version": str(tool.get("version", "")),
    }
    if "git_commit" in tool:
        tags["cot_transfer.git_commit"] = tool["git_commit"] + ("-dirty" if tool.get("git_dirty") else "")
    for name, version in ((provenance.get("server") or {}).get("versions") or {}).items():
        tags[f"server.{name}"] = str(version)
    return tags


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    text = value if isinstance(value, str) else json.dumps(value)
    return {prefix: text[:_MLFLOW_PARAM_CHARS]}


def fraction_metrics(summary: Mapping[str, Any]) -> list[dict[str, float]]:
    """One dict of metrics per measured fraction, in order (the index is the step)."""
    steps = [_numbers(entry) for entry in summary.get("per_fraction") or ()]
    blocks = [
        (receiver, mode, block)
        for receiver, modes in (summary.get("receivers") or {}).items()
        for mode, block in modes.items()
    ]
    if len(blocks) > 1:
        for receiver, mode, block in blocks:
            for index, entry in enumerate(block.get("per_fraction") or ()):
                if index < len(steps):
                    numbers = _numbers(entry)
                    numbers.pop("fraction", None)
                    steps[index].update({f"{receiver}/{mode}/{name}": value for name, value in numbers.items()})
    return steps


def _numbers(entry: Mapping[str, Any]) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for name, value in entry.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            numbers[name] = float(value)
        elif isinstance(value, Mapping) and {"low", "high"} <= set(value):
            for side in ("low", "high"):
                if isinstance(value[side], int | float):
                    numbers[f"{name}_{side}"] = float(value[side])
    return numbers


# --------------------------------------------------------------------------- MLflow


def mlflow_uri(target: str) -> str:
    """The tracking URI of ``--track mlflow[:TARGET]``: a URI as given, a folder as its file URI,
    nothing as ``mlruns/`` in the working directory."""
    if not target:
        return (Path.cwd() / DEFAULT_MLFLOW_STORE).as_uri()
    if urlparse(target).scheme:
        return target
    return Path(target).resolve().as_uri()


@contextlib.contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    """``name=value`` in the environment for the block, then as it was (unset if it was unset)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _file_store_allowed(uri: str) -> contextlib.AbstractContextManager[None]:
    if not uri.startswith("file:"):
        return contextlib.nullcontext()
    return _environment_variable("MLFLOW_ALLOW_FILE_STORE", "true")


def _log_mlflow(record: RunRecord, target: str) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri(target)
    with _file_store_allowed(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_NAME
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(experiment_name)
        )
        run = client.create_run(experiment_id, run_name=record.name, tags=record.tags)
        run_id = run.info.run_id
        params = [Param(name, value) for name, value in record.params.items()]
        for start in range(0, len(params), _MLFLOW_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + _MLFLOW_PARAMS_PER_BATCH])
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(name, value, stamp, step)
            for step, numbers in enumerate(record.steps)
            for name, value in numbers.items()
        ]
        for start in range(0, len(metrics), _MLFLOW_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _MLFLOW_METRICS_PER_BATCH])
        for path in record.artifacts:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
    return f"mlflow run {run_id} in experiment {experiment_name!r} at {uri}"


# --------------------------------------------------------------------------- W&B


def _log_wandb(record: RunRecord, project: str) -> str:
    with _offline():
        return _log_wandb_offline(record, project)


def _offline() -> contextlib.AbstractContextManager[None]:
    """``WANDB_MODE=offline`` for the W&B calls: never the network, whatever the environment said."""
    return _environment_variable("WANDB_MODE", "offline")


def _log_wandb_offline(record: RunRecord, project: str) -> str:
    import wandb

    out_dir = Path(record.tags["cot_transfer.results_folder"])
    run = wandb.init(
        project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_NAME,
        name=record.name,
        dir=str(out_dir),
        mode="offline",
        config=record.params,
        tags=[f"{name}={value}"[:64] for name, value in record.tags.items() if name != "cot_transfer.results_folder"],
        settings=wandb.Settings(silent=True),
    )
    try:
        for step, numbers in enumerate(record.steps):
            run.log(numbers, step=step)
        artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9._-]", "-", record.name) + "-results", type="results")
        for path in record.artifacts:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        where = str(Path(run.dir).parent)
    finally:
        run.finish()
        # Waits until the offline run file is complete (finish alone may return before the
        # W&B service has written it), so the folder can be read or synced as soon as we return.
        wandb.teardown()
    return f"wandb offline run {where} (upload later with: wandb sync {where})"
