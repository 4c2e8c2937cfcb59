"""Which problems of a dataset a run uses: by id, a seeded sample, the first N.

``select`` applies, in this order, ``ids`` (the problems named, in the dataset's order; an id the
dataset lacks is an error naming it), ``sample`` (K problems drawn with ``seed``; stratified by
the ``group_by`` fields when given, each group getting its share of K by the largest-remainder
method, so a MATH-500 sample keeps the levels and subjects in the dataset's proportions) and
``limit`` (the first N). The chosen problems keep the dataset's order, so a sample is the same
set in the same order on every machine: the draw uses ``random.Random(seed)`` only.

The selection is recorded in ``run.json`` (``dataset.selection``); the folder keeps the chosen
problems, so ``--resume`` and ``--from`` repeat it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cot_transfer.domain.requests import Problem

# The group of problems that lack a ``group_by`` field: sampled like any other group.
NO_GROUP = "(none)"


class SelectionError(ValueError):
    """A selection the dataset cannot satisfy (an unknown id, a sample larger than the dataset)."""


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: tuple[str, ...] = ()
    sample: int | None = Field(default=None, ge=1)
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)

    @property
    def chooses(self) -> bool:
        return bool(self.ids) or self.sample is not None or self.limit is not None


def read_ids(text: str) -> tuple[str, ...]:
    """``--ids``: a file of ids (one a line; blank lines and ``#`` comments skipped) or a
    comma-separated list."""
    path = Path(text)
    if path.is_file():
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        ids = tuple(line for line in lines if line and not line.startswith("#"))
    else:
        ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids:
        raise SelectionError(f"--ids {text}: names no id")
    return ids


def select(problems: Sequence[Problem], selection: Selection, group_by: Sequence[str] = ()) -> list[Problem]:
    """The problems ``selection`` chooses, in the dataset's order (see the module's docstring)."""
    chosen = list(problems)
    if selection.ids:
        known = {problem.id for problem in chosen}
        unknown = [problem_id for problem_id in dict.fromkeys(selection.ids) if problem_id not in known]
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise SelectionError(f"--ids: {len(unknown)} id(s) not in the dataset: {shown}")
        wanted = set(selection.ids)
        chosen = [problem for problem in chosen if problem.id in wanted]
    if selection.sample is not None:
        chosen = _sample(chosen, selection.sample, selection.seed, group_by)
    if selection.limit is not None:
        chosen = chosen[: selection.limit]
    return chosen


def group_value(value: Any) -> str | None:
    """The group a metadata value puts a problem in (here and in the report's breakdowns,
    ``groups``); None for no value. ``5`` and ``"5"`` (a CSV cell) are one group."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def group_of(problem: Problem, group_by: Sequence[str]) -> str:
    """The stratum of ``problem``: its values of the ``group_by`` fields together."""
    values = [group_value(problem.metadata.get(field)) for field in group_by]
    return " / ".join(value if value is not None else NO_GROUP for value in values)


def allocate(sizes: dict[str, int], k: int) -> dict[str, int]:
    """``k`` split over groups of ``sizes`` in proportion (Hamilton's largest remainder): each
    group gets the floor of its quota, then the largest remainders one more each; ties go to the
    larger group, then the earlier one. No group gets more than it has."""
    total = sum(sizes.values())
    quotas = {group: k * size / total for group, size in sizes.items()}
    shares = {group: int(quota) for group, quota in quotas.items()}
    order = sorted(sizes, key=lambda group: (-(quotas[group] - shares[group]), -sizes[group]))
    for group in order[: k - sum(shares.values())]:
        shares[group] += 1
    return shares


def _sample(problems: list[Problem], k: int, seed: int, group_by: Sequence[str]) -> list[Problem]:
    if k > len(problems):
        raise SelectionError(f"--sample {k}: the dataset has only {len(problems)} problems to choose from")
    rng = random.Random(seed)
    if not group_by:
        picked = set(rng.sample(range(len(problems)), k))
    else:
        members: dict[str, list[int]] = {}
        for index, problem in enumerate(problems):
            members.setdefault(group_of(problem, group_by), []).append(index)
        shares = allocate({group: len(indices) for group, indices in members.items()}, k)
        # Groups in a fixed order, so the draw does not depend on the dataset's ordering of groups.
        picked = {index for group in sorted(members) for index in rng.sample(members[group], shares[group])}
    return [problem for index, problem in enumerate(problems) if index in picked]
