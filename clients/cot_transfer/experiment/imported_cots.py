"""Imported CoTs: a JSONL of ``id``, ``problem``, ``answer``, ``cot`` and an optional ``format``.

Each record's CoT goes to the service with its problem, which then cuts it instead of having the
strong model write one. ``format`` names the reasoning format the CoT is written in (``plain``,
``qwen3``, ``deepseek_r1``, ``gpt_oss``; ``plain`` when absent): the service splits the CoT in it
into reasoning and final answer, and a CoT that does not parse is that problem's error. The cuts
are made with the strong model's tokenizer (the service's replica that cuts it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from cot_transfer.domain.requests import Problem
from cot_transfer.experiment.dataset_files import DatasetError
from cot_transfer.experiment.datasets import DatasetOptions, load_problems

# The record fields of an imported CoT; a generic reader keeps them in the metadata.
COT_FIELD = "cot"
FORMAT_FIELDS = ("format", "cot_format")


def lift_cot(problem: Problem) -> Problem:
    """``problem`` with the CoT fields of its record moved from its metadata into ``cot`` and
    ``cot_format``; unchanged when it has none."""
    if COT_FIELD not in problem.metadata:
        return problem
    metadata = dict(problem.metadata)
    cot = metadata.pop(COT_FIELD)
    formats = [metadata.pop(name) for name in FORMAT_FIELDS if name in metadata]
    return dataclasses.replace(
        problem, cot=str(cot), cot_format=str(formats[0]) if formats else problem.cot_format, metadata=metadata
    )


def lift_cots(problems: Sequence[Problem]) -> list[Problem]:
    return [lift_cot(problem) for problem in problems]


def load_cots(path: Path) -> list[Problem]:
    """The problems of a CoT file, each with its CoT; raises ``DatasetError``."""
    problems = lift_cots(load_problems(path, DatasetOptions(format="generic")))
    for index, problem in enumerate(problems):
        if problem.cot is None:
            raise DatasetError(path, index + 1, f"record {problem.id!r} has no {COT_FIELD!r} field")
        if not isinstance(problem.cot, str) or not problem.cot.strip():
            raise DatasetError(path, index + 1, f"record {problem.id!r} has an empty {COT_FIELD!r}")
    return problems
