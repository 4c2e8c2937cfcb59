r"""The record formats of the common math datasets, recognised by their fields: ``generic``
(``problem``, ``answer`` or a ``solution``'s last ``\boxed{}``, optional ``id`` and ``metadata``
object), ``math`` (MATH-500: the id in ``unique_id``), ``aime`` (``id``/``ID``, ``problem``/``Problem``,
``answer``/``Answer``), ``gsm8k`` (``question``, the answer after ``####``) and ``olympiad`` (AMC,
OlympiadBench: ``question`` or ``problem``, ``final_answer`` as a value or list). A record that sets
two spellings of one role is ambiguous and refused; every other field is the problem's metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any, Literal

from cot_transfer.domain.answers import last_boxed_content

FormatName = Literal["generic", "math", "aime", "gsm8k", "olympiad"]
FORMAT_NAMES: tuple[FormatName, ...] = ("generic", "math", "aime", "gsm8k", "olympiad")

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


class RecordError(Exception):
    """What is wrong with one record; the loader adds the file and the line."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _nonempty(value: Any, types: type | tuple[type, ...], names: str) -> str:
    if isinstance(value, bool) or not isinstance(value, types):  # true/false is no id nor answer
        raise ValueError(f"must be {names}, got {_kind(value)}")
    if not str(value).strip():
        raise ValueError("is empty")
    return str(value)


def _record_id(value: Any) -> str:
    return _nonempty(value, (str, int), "a string or an integer")


def _text(value: Any) -> str:
    return _nonempty(value, str, "a string")


def _scalar_answer(value: Any) -> str:
    text = _nonempty(value, (str, int, float), "a string or a number").strip()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    # Parquet and pandas store integer answers as floats: 204.0 is the answer 204.
    return (str(int(value)) if value.is_integer() else repr(value)) if isinstance(value, float) else text


def _gsm8k_answer(value: Any) -> str:
    if "####" not in _text(value):
        raise ValueError('has no "####" before the final answer, as GSM8K answers have')
    reference = value.rsplit("####", 1)[1].strip()
    if not reference:
        raise ValueError('has nothing after "####"')
    # GSM8K writes 1,000 for a thousand; the grader compares 1000.
    return reference.replace(",", "") if _THOUSANDS.fullmatch(reference) else reference


def _without_dollars(text: str) -> str:
    """OlympiadBench writes answers as ``$\\frac{1}{2}$``: the delimiters are no part of them."""
    if len(text) > 2 and text.startswith("$") and text.endswith("$") and "$" not in text[1:-1]:
        return text[1:-1].strip() or text
    return text


def _final_answer(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            raise ValueError("is an empty list")
        return ", ".join(_without_dollars(_scalar_answer(item)) for item in value)
    try:
        return _without_dollars(_scalar_answer(value))
    except ValueError:
        raise ValueError(f"must be a string, a number or a list of them, got {_kind(value)}") from None


@dataclass(frozen=True)
class RecordFormat:
    """The fields (in the spellings the datasets use) where a format keeps each part of a problem."""

    name: FormatName
    id_keys: tuple[str, ...]
    problem_keys: tuple[str, ...]
    answer_keys: tuple[str, ...]
    solution_keys: tuple[str, ...] = ()
    id_required: bool = False
    metadata_key: str | None = None  # a generic record's ``metadata`` object joins its metadata
    answer: Callable[[Any], str] = _scalar_answer

    def mapped(self, *, id_field: str | None, problem_field: str | None, answer_field: str | None) -> RecordFormat:
        """The format with the roles that a command line names taken from those fields."""
        return replace(
            self,
            id_keys=(id_field,) if id_field else self.id_keys,
            problem_keys=(problem_field,) if problem_field else self.problem_keys,
            answer_keys=(answer_field,) if answer_field else self.answer_keys,
            id_required=self.id_required or bool(id_field),
        )

    def parse(self, raw: Mapping[str, Any]) -> tuple[str | None, str, str, dict[str, Any]]:
        """(id or None, problem, answer, metadata) of one record; raises ``RecordError``."""
        id_key = _one_of(raw, self.id_keys, "--id-field")
        problem_key = _one_of(raw, self.problem_keys, "--problem-field")
        answer_key = _one_of(raw, self.answer_keys, "--answer-field")
        solution_key = _one_of(raw, self.solution_keys, None)
        if self.id_required and id_key is None:
            raise RecordError(f'missing field "{self.id_keys[0]}" (the id); {_found(raw)}')
        if problem_key is None:
            raise RecordError(f'missing field "{self.problem_keys[0]}"; {_found(raw)}')
        if answer_key is None and solution_key is None:
            wanted = f'"{self.answer_keys[0]}"'
            if self.solution_keys:
                wanted += f' (or a "{self.solution_keys[0]}" with a \\boxed{{}} answer)'
            raise RecordError(f"missing field {wanted}; {_found(raw)}")
        record_id = _checked(raw, id_key, _record_id)
        problem = str(_checked(raw, problem_key, _text))
        answer = _checked(raw, answer_key, self.answer)
        if answer is None:
            answer = last_boxed_content(_checked(raw, solution_key, _text) or "")
            if not answer:
                raise RecordError(
                    f'field "{solution_key}" has no \\boxed{{}} answer, and the record has no answer field'
                )
        # The solution stays metadata; so do a role's other spellings unless left empty.
        used = {id_key, problem_key, answer_key, self.metadata_key}
        metadata = {key: value for key, value in raw.items() if key not in used}
        explicit = raw.get(self.metadata_key) if self.metadata_key else None
        if explicit is not None and not isinstance(explicit, dict):
            raise RecordError(f'field "{self.metadata_key}" must be a JSON object, got {_kind(explicit)}')
        return record_id, problem, answer, json_values({**metadata, **(explicit or {})})


def _checked(raw: Mapping[str, Any], key: str | None, check: Callable[[Any], str]) -> str | None:
    try:
        return None if key is None else check(raw[key])
    except ValueError as error:
        raise RecordError(f'field "{key}" {error}') from None


def _one_of(raw: Mapping[str, Any], keys: Sequence[str], flag: str | None) -> str | None:
    present = [key for key in keys if raw.get(key) is not None]
    if len(present) > 1:
        names = " and ".join(f'"{key}"' for key in present)
        choose = f"; name the one to use with {flag}" if flag else ""
        raise RecordError(f"ambiguous: both {names} are set{choose}; {_found(raw)}")
    return present[0] if present else None


def _found(raw: Mapping[str, Any]) -> str:
    return "fields found: " + (", ".join(f'"{key}"' for key, value in raw.items() if value is not None) or "none")


def json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON holds them: dates as ISO text, NaN as null. Missing values (null) are
    left out, as ``datasets`` gives every record every field of the file; so is binary data
    (images), which nothing downstream can show."""
    converted = {str(key): _json_value(value) for key, value in values.items()}
    return {key: value for key, value in converted.items() if value is not None}


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return json_values(value)
    if isinstance(value, list | tuple):
        return [item for item in map(_json_value, value) if item is not None]
    return value if value is None or isinstance(value, str | bool | int) else None


_GENERIC = RecordFormat("generic", ("id",), ("problem",), ("answer",), ("solution",), metadata_key="metadata")
FORMATS: dict[FormatName, RecordFormat] = {
    "generic": _GENERIC,
    "math": RecordFormat("math", ("unique_id",), ("problem",), ("answer",), ("solution",), True),
    "aime": RecordFormat(
        "aime", ("id", "ID"), ("problem", "Problem"), ("answer", "Answer"), ("solution", "Solution"), True
    ),
    "gsm8k": RecordFormat("gsm8k", ("id",), ("question",), ("answer",), answer=_gsm8k_answer),
    "olympiad": RecordFormat("olympiad", ("id",), ("question", "problem"), ("final_answer",), answer=_final_answer),
}


def _is_aime(raw: Mapping[str, Any]) -> bool:
    keys = {key for key, value in raw.items() if value is not None}
    return {"ID", "Problem"} <= keys or ({"id", "problem", "answer"} <= keys and bool(keys & {"year", "url"}))


# The fields that give each native format away; a record matching none with a "problem" is generic.
_SIGNATURES: dict[FormatName, Callable[[Mapping[str, Any]], bool]] = {
    "math": lambda raw: raw.get("unique_id") is not None,
    "olympiad": lambda raw: raw.get("final_answer") is not None,
    "gsm8k": lambda raw: raw.get("question") is not None and "####" in str(raw.get("answer") or ""),
    "aime": _is_aime,
}


def detect_format(raw: Mapping[str, Any], *, fields_named: bool = False) -> RecordFormat:
    """The format ``raw``'s fields show; ``fields_named``: the command line names the fields, so
    a record no format knows is read as generic with them. Raises ``RecordError``."""
    matches = [name for name, matches in _SIGNATURES.items() if matches(raw)]
    if len(matches) > 1:
        raise RecordError(
            f"ambiguous: the fields fit the formats {', '.join(matches)}; choose one with --format; {_found(raw)}"
        )
    if matches:
        return FORMATS[matches[0]]
    if raw.get("problem") is not None or fields_named:
        return _GENERIC
    raise RecordError(
        "no known dataset format has these fields; name them with --problem-field and --answer-field"
        f" (and --id-field), or choose --format; {_found(raw)}"
    )
