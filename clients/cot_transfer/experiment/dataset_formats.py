r"""The record formats of the common math datasets, one row each in ``FORMATS``: each role's fields
(every spelling the datasets use) and the fields that give the format away. A record that sets two
spellings of one role is ambiguous; every other field is metadata."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, time
from typing import Any, Literal, get_args

from cot_transfer.domain.answers import last_boxed_content

FormatName = Literal["generic", "math", "aime", "gsm8k", "olympiad"]
FORMAT_NAMES: tuple[FormatName, ...] = get_args(FormatName)
# A format's roles; the answer may be the last \boxed{} of a solution.
ROLE_NAMES = ("id", "problem", "answer", "solution")


class RecordError(Exception):
    """What is wrong with one record; the loader adds the file and the line."""


def _nonempty(value: Any, types: type | tuple[type, ...] = str, names: str = "a string") -> str:
    if isinstance(value, bool) or not isinstance(value, types):  # true/false is no id nor answer
        raise ValueError(f"must be {names}, got {type(value).__name__}")
    if not str(value).strip():
        raise ValueError("is empty")
    return str(value)


def _scalar_answer(value: Any) -> str:
    text = _nonempty(value, (str, int, float), "a string or a number").strip()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    # Parquet and pandas store integer answers as floats: 204.0 is the answer 204.
    return (str(int(value)) if value.is_integer() else repr(value)) if isinstance(value, float) else text


def _gsm8k_answer(value: Any) -> str:
    if "####" not in _nonempty(value):
        raise ValueError('has no "####" before the final answer, as GSM8K answers have')
    if not (reference := value.rsplit("####", 1)[1].strip()):
        raise ValueError('has nothing after "####"')
    # GSM8K writes 1,000 for a thousand; the grader compares 1000.
    return reference.replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", reference) else reference


def _final_answer(value: Any) -> str:
    if not (items := value if isinstance(value, list) else [value]):
        raise ValueError("is an empty list")
    if not all(isinstance(item, str | int | float) for item in items):
        raise ValueError(f"must be a string, a number or a list of them, got {type(value).__name__}")
    answers = [_scalar_answer(item) for item in items]
    # OlympiadBench writes answers as $\frac{1}{2}$: the delimiters are no part of them.
    bare = [re.fullmatch(r"\$\s*([^$\s][^$]*?)\s*\$", answer) for answer in answers]
    return ", ".join(match[1] if match else answer for match, answer in zip(bare, answers, strict=True))


def _found(raw: Mapping[str, Any]) -> str:
    # ``datasets`` gives every record every column of the file: a null is a field the record lacks.
    return "fields found: " + (", ".join(f'"{key}"' for key, value in raw.items() if value is not None) or "none")


@dataclass(frozen=True)
class RecordFormat:
    name: FormatName
    roles: Mapping[str, tuple[str, ...]]  # each of ROLE_NAMES -> its spellings
    signatures: tuple[str, ...] = ()  # recognised when a record sets every field of one (space-separated)
    id_required: bool = False
    answer: Callable[[Any], str] = _scalar_answer
    metadata_key: str | None = None  # a generic record's ``metadata`` object joins its metadata

    def mapped(self, *, id_field: str | None, problem_field: str | None, answer_field: str | None) -> RecordFormat:
        """The format with the roles that a command line names taken from those fields."""
        named = {"id": id_field, "problem": problem_field, "answer": answer_field}
        roles = {**self.roles, **{role: (field,) for role, field in named.items() if field}}
        return replace(self, roles=roles, id_required=self.id_required or bool(id_field))

    def parse(self, raw: Mapping[str, Any]) -> tuple[str | None, str, str, dict[str, Any]]:
        """(id or None, problem, answer, metadata) of one record; raises ``RecordError``."""
        id_key, problem_key, answer_key, solution_key = (self._key(raw, role) for role in ROLE_NAMES)
        if self.id_required and id_key is None:
            raise RecordError(f'missing field "{self.roles["id"][0]}" (the id); {_found(raw)}')
        if problem_key is None:
            raise RecordError(f'missing field "{self.roles["problem"][0]}"; {_found(raw)}')
        if answer_key is None and solution_key is None:
            solution = self.roles.get("solution")
            boxed = f' (or a "{solution[0]}" with a \\boxed{{}} answer)' if solution else ""
            raise RecordError(f'missing field "{self.roles["answer"][0]}"{boxed}; {_found(raw)}')
        record_id = self._checked(raw, id_key, lambda value: _nonempty(value, (str, int), "a string or an integer"))
        problem = str(self._checked(raw, problem_key, _nonempty))
        answer = self._checked(raw, answer_key, self.answer)
        if not (answer := answer or last_boxed_content(self._checked(raw, solution_key, _nonempty) or "")):
            raise RecordError(f'field "{solution_key}" has no \\boxed{{}} answer, and the record has no answer field')
        explicit = raw.get(self.metadata_key) if self.metadata_key else None
        if explicit is not None and not isinstance(explicit, dict):
            raise RecordError(f'field "{self.metadata_key}" must be a JSON object, got {type(explicit).__name__}')
        # The solution stays metadata; so do a role's other spellings unless left empty.
        used = {id_key, problem_key, answer_key, self.metadata_key}
        rest = {key: value for key, value in raw.items() if key not in used}
        return record_id, problem, answer, json_values({**rest, **(explicit or {})})

    @staticmethod
    def _checked(raw: Mapping[str, Any], key: str | None, check: Callable[[Any], str]) -> str | None:
        try:
            return None if key is None else check(raw[key])
        except ValueError as error:
            raise RecordError(f'field "{key}" {error}') from None

    def _key(self, raw: Mapping[str, Any], role: str) -> str | None:
        if len(present := [key for key in self.roles.get(role, ()) if raw.get(key) is not None]) > 1:
            choose = f"; name the one to use with --{role}-field" if role != "solution" else ""
            names = " and ".join(f'"{key}"' for key in present)
            raise RecordError(f"ambiguous: both {names} are set{choose}; {_found(raw)}")
        return present[0] if present else None


def json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON holds them: dates as ISO text; nulls, NaN and binary data (images) left out."""
    text = json.dumps(values, default=lambda value: value.isoformat() if isinstance(value, date | time) else None)
    return dict(json.loads(text, parse_constant=lambda _: None, object_pairs_hook=_without_nulls))


def _without_nulls(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


def _roles(*spellings: str) -> dict[str, tuple[str, ...]]:
    """Each role's spellings, space-separated, in ``ROLE_NAMES``' order."""
    return {role: tuple(names.split()) for role, names in zip(ROLE_NAMES, spellings, strict=False)}


FORMATS: dict[FormatName, RecordFormat] = {
    # A record that no other format claims and that has a "problem" is generic.
    "generic": RecordFormat("generic", _roles("id", "problem", "answer", "solution"), metadata_key="metadata"),
    "math": RecordFormat("math", _roles("unique_id", "problem", "answer", "solution"), ("unique_id",), True),
    "aime": RecordFormat(
        "aime",
        _roles("id ID", "problem Problem", "answer Answer", "solution Solution"),
        ("ID Problem", "id problem answer year", "id problem answer url"),
        True,
    ),
    # GSM8K is recognised by the "####" before its answers' final answer (``detect_format``).
    "gsm8k": RecordFormat("gsm8k", _roles("id", "question", "answer"), answer=_gsm8k_answer),
    # AMC, OlympiadBench: final_answer a value or a list of them.
    "olympiad": RecordFormat(
        "olympiad", _roles("id", "question problem", "final_answer"), ("final_answer",), answer=_final_answer
    ),
}


def detect_format(raw: Mapping[str, Any], *, fields_named: bool = False) -> RecordFormat:
    """The format ``raw``'s fields show; ``fields_named``: the command line names the fields, so
    a record no format knows is read as generic with them. Raises ``RecordError``."""
    keys = {key for key, value in raw.items() if value is not None}
    matches = [name for name, form in FORMATS.items() if any(set(sign.split()) <= keys for sign in form.signatures)]
    if "question" in keys and "####" in str(raw.get("answer") or ""):
        matches.append("gsm8k")
    if len(matches) > 1:
        fit = ", ".join(matches)
        raise RecordError(f"ambiguous: the fields fit the formats {fit}; choose one with --format; {_found(raw)}")
    if matches or "problem" in keys or fields_named:
        return FORMATS[matches[0] if matches else "generic"]
    raise RecordError(
        "no known dataset format has these fields; name them with --problem-field and --answer-field"
        f" (and --id-field), or choose --format; {_found(raw)}"
    )
