"""Where a run came from: when it ran, with what tool, code and service (run.json's ``provenance``).

``run.json`` keeps one ``provenance`` record, outside the settings (so never in the settings
hash: a resume on a newer tool or server is still the same experiment). Each time the folder is
written, by the first run and by every ``--resume``, is a *session*: its start and end, wall time,
the rows, samples and tokens it drew, the tool's version and git commit and the server's versions.
The record's top level holds the run's span over all sessions (first start, last end, summed wall
time, samples and tokens), and the environment of the session that started it: the tool, the
client's Python and packages, and the server's GetInfo (models, fingerprints, sampling defaults,
versions).

Generated tokens: the strong model's CoT tokens for the CoTs it wrote (an imported CoT costs
none; the text after its reasoning is not counted), and every receiver's completion tokens. The
completions' token counts come with their texts, so a run with ``--no-completions`` cannot count
its receivers' tokens: ``generated_tokens_complete`` is then false.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cot_transfer.domain.requests import FractionResult, ServiceInfo, StrongCot

DISTRIBUTION = "cot-transfer"
PROVENANCE_KEY = "provenance"

# The client side's packages that shape a run's numbers or its files.
CLIENT_DISTRIBUTIONS = ("grpcio", "protobuf", "pydantic", "numpy", "scipy", "statsmodels", "pandas", "pyarrow")

_GIT_TIMEOUT_S = 10.0


def tool_version() -> str:
    """The installed cot-transfer's version ("unknown" when run from a tree that is not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def git_state(source: Path | None = None) -> dict[str, Any] | None:
    """``{"git_commit": sha, "git_dirty": bool}`` of the checkout this code runs from, or None
    outside one (an installed wheel) or without git. ``source`` is a file of the package; it must
    be tracked by the repository, so that a wheel installed into a venv that sits inside some
    checkout is not credited with that checkout's commit. Dirty: a tracked file differs from HEAD."""
    source = source or Path(__file__)
    folder = source.parent

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None

    tracked = git("ls-files", "--error-unmatch", source.name)
    if tracked is None or tracked.returncode != 0:
        return None
    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if head is None or head.returncode != 0 or status is None or status.returncode != 0:
        return None
    return {"git_commit": head.stdout.strip(), "git_dirty": bool(status.stdout.strip())}


def tool_record() -> dict[str, Any]:
    """The tool's name and version, and its git commit when it runs from a checkout (else no
    git keys)."""
    return {"name": DISTRIBUTION, "version": tool_version(), **(git_state() or {})}


def _installed(names: Iterable[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def client_record() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _installed(CLIENT_DISTRIBUTIONS),
    }


def server_record(info: ServiceInfo) -> dict[str, Any]:
    """The service's GetInfo as JSON: models with their fingerprints, sampling defaults, graders,
    limits and versions."""
    return dataclasses.asdict(info)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Tally:
    """What a session drew: rows, samples and generated tokens per served model (the empty
    receiver is the weak model). Counted as results arrive, before the folder drops completion
    texts it does not keep."""

    def __init__(self, strong_model: str, weak_model: str, imported_cots: Iterable[str] = ()) -> None:
        self._strong_model = strong_model
        self._weak_model = weak_model
        self._imported = frozenset(imported_cots)
        self.rows = 0
        self.samples: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.rows_without_token_counts = 0

    def add_strong(self, cot: StrongCot) -> None:
        if cot.problem_id in self._imported:
            return
        self.samples[self._strong_model] += 1
        self.tokens[self._strong_model] += cot.cot_num_tokens

    def add_result(self, row: FractionResult) -> None:
        model = row.receiver or self._weak_model
        self.rows += 1
        self.samples[model] += row.n
        self.tokens[model] += sum(completion.num_tokens for completion in row.completions)
        if len(row.completions) != row.n:
            self.rows_without_token_counts += 1


class Session:
    """One writing of a results folder (a run or a resume), from its start to its end."""

    def __init__(self, info: ServiceInfo, tally: Tally, *, resumed: bool, origin: Mapping[str, Any] | None = None):
        self.info = info
        self.tally = tally
        self.resumed = resumed
        self.origin = dict(origin or {})
        self.started_at = now_iso()
        self._started = time.monotonic()
        self._tool = tool_record()

    def opened(self, run: dict[str, Any]) -> dict[str, Any]:
        """``run`` (run.json's content) with this session added; the run's environment is set by
        the session that starts it."""
        provenance = dict(run.get(PROVENANCE_KEY) or {})
        if not provenance:
            provenance.update(
                tool=self._tool, client=client_record(), server=server_record(self.info), origin=self.origin
            )
        sessions = [*provenance.get("sessions", ()), self._record(ended=False)]
        return {**run, PROVENANCE_KEY: _with_totals(provenance, sessions)}

    def closed(self, run: dict[str, Any], outcome: str) -> dict[str, Any]:
        """``run`` with this session (its last) ended: ``outcome`` is "completed" or the error."""
        provenance = dict(run.get(PROVENANCE_KEY) or {})
        sessions = list(provenance.get("sessions", ()))
        record = {**self._record(ended=True), "outcome": outcome}
        if sessions and sessions[-1].get("started_at") == self.started_at:
            sessions[-1] = record
        else:
            sessions.append(record)
        return {**run, PROVENANCE_KEY: _with_totals(provenance, sessions)}

    def _record(self, *, ended: bool) -> dict[str, Any]:
        wall = time.monotonic() - self._started
        return {
            "started_at": self.started_at,
            "ended_at": now_iso() if ended else None,
            "wall_time_s": round(wall, 3) if ended else None,
            "resumed": self.resumed,
            "origin": self.origin,
            "tool": self._tool,
            "server_versions": dict(self.info.versions),
            "rows": self.tally.rows,
            "samples_drawn": dict(self.tally.samples),
            "generated_tokens": dict(self.tally.tokens),
            "generated_tokens_complete": self.tally.rows_without_token_counts == 0,
        }


def _with_totals(provenance: dict[str, Any], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    samples: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for session in sessions:
        samples.update(session.get("samples_drawn") or {})
        tokens.update(session.get("generated_tokens") or {})
    return {
        **provenance,
        "started_at": sessions[0]["started_at"],
        "ended_at": sessions[-1]["ended_at"],
        "wall_time_s": round(sum(session.get("wall_time_s") or 0.0 for session in sessions), 3),
        "samples_drawn": dict(samples),
        "generated_tokens": dict(tokens),
        "generated_tokens_complete": all(session.get("generated_tokens_complete", False) for session in sessions),
        "sessions": sessions,
    }
