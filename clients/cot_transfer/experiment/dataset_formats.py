r"""The record formats of the common math datasets, recognised by their fields.

Each format says which field holds a problem's id, its text and its reference answer; every
other field of the record becomes the problem's metadata. The values are validated by pydantic
models, one per kind of answer:

* ``generic``: ``problem``, ``answer`` (or a ``solution`` whose last ``\boxed{}`` is the answer),
  optional ``id`` and ``metadata`` object (which wins over the other fields on a clash);
* ``math`` (MATH, MATH-500): like generic, with the id in ``unique_id``;
* ``aime``: ``id``, ``problem``, ``answer`` (also capitalised, as some AIME files have them);
* ``gsm8k``: ``question``, and an ``answer`` whose reference follows its last ``####``;
* ``olympiad`` (AMC, OlympiadBench): ``question`` or ``problem``, and ``final_answer``, a value
  or a list of values (joined with ", "), optional ``id``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, model_validator

from cot_transfer.domain.answers import last_boxed_content

FormatName = Literal["generic", "math", "aime", "gsm8k", "olympiad"]
FORMAT_NAMES: tuple[FormatName, ...] = ("generic", "math", "aime", "gsm8k", "olympiad")

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


class RecordError(Exception):
    """What is wrong with one record; the loader adds the file and the line."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _record_id(value: Any) -> str:
    # bool is an int subclass, but true/false is no id.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a string or an integer, got {_kind(value)}")
    text = str(value)
    if not text.strip():
        raise ValueError("is empty")
    return text


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise ValueError("is empty")
    return value


def _scalar_answer(value: Any) -> str:
    # true/false is no answer to a math problem.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a string or a number, got {_kind(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        # Parquet and pandas store integer answers as floats: 204.0 is the answer 204.
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value).strip()
    if not text:
        raise ValueError("is empty")
    return text


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_kind(value)}")
    return value


def _gsm8k_answer(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_kind(value)}")
    if "####" not in value:
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


def _metadata_object(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object, got {_kind(value)}")
    return value


RecordId = Annotated[str, PlainValidator(_record_id)]
Text = Annotated[str, PlainValidator(_text)]
ScalarAnswer = Annotated[str, PlainValidator(_scalar_answer)]
OptionalText = Annotated[str | None, PlainValidator(_optional_text)]
Gsm8kAnswer = Annotated[str, PlainValidator(_gsm8k_answer)]
FinalAnswer = Annotated[str, PlainValidator(_final_answer)]
MetadataObject = Annotated[dict[str, Any] | None, PlainValidator(_metadata_object)]


class _Fields(BaseModel):
    """A record's id, text and answer, taken from the fields its format names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RecordId | None = None
    problem: Text


class _BoxedFields(_Fields):
    answer: ScalarAnswer | None = None
    solution: OptionalText = None

    @model_validator(mode="after")
    def _has_an_answer(self) -> _BoxedFields:
        if self.answer is None and not (self.solution and last_boxed_content(self.solution)):
            raise ValueError("solution: has no \\boxed{} answer, and the record has no answer field")
        return self

    def reference(self) -> str:
        if self.answer is not None:
            return self.answer
        boxed = last_boxed_content(self.solution or "")
        assert boxed is not None, "checked by _has_an_answer"
        return boxed


class _Gsm8kFields(_Fields):
    answer: Gsm8kAnswer

    def reference(self) -> str:
        return self.answer


class _OlympiadFields(_Fields):
    answer: FinalAnswer

    def reference(self) -> str:
        return self.answer


@dataclass(frozen=True)
class RecordFormat:
    """Where a format keeps each part of a problem.

    Each role lists the fields that may hold it, in the spellings the datasets use; a record
    that has two of them is ambiguous (which one is meant?) and is refused.
    """

    name: FormatName
    fields: type[_BoxedFields | _Gsm8kFields | _OlympiadFields]
    id_keys: tuple[str, ...]
    problem_keys: tuple[str, ...]
    answer_keys: tuple[str, ...]
    solution_keys: tuple[str, ...] = ()
    id_required: bool = False
    # A generic record's ``metadata`` object is merged into its metadata.
    metadata_key: str | None = None

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
        chosen = {
            "id": _one_of(raw, self.id_keys, "--id-field"),
            "problem": _one_of(raw, self.problem_keys, "--problem-field"),
            "answer": _one_of(raw, self.answer_keys, "--answer-field"),
            "solution": _one_of(raw, self.solution_keys, None),
        }
        if self.id_required and chosen["id"] is None:
            raise RecordError(f'missing field "{self.id_keys[0]}" (the id); {_found(raw)}')
        if chosen["problem"] is None:
            raise RecordError(f'missing field "{self.problem_keys[0]}"; {_found(raw)}')
        if chosen["answer"] is None and chosen["solution"] is None:
            wanted = f'"{self.answer_keys[0]}"'
            if self.solution_keys:
                wanted += f' (or a "{self.solution_keys[0]}" with a \\boxed{{}} answer)'
            raise RecordError(f"missing field {wanted}; {_found(raw)}")
        values = {role: raw[key] for role, key in chosen.items() if key is not None}
        try:
            fields = self.fields.model_validate(values)
        except ValidationError as error:
            raise RecordError(_describe(error, chosen)) from None
        used = {key for role, key in chosen.items() if key is not None and role != "solution"}
        # A role's other spellings left empty (null, a blank CSV cell) say nothing about the problem.
        used.update(key for key in (*self.id_keys, *self.problem_keys, *self.answer_keys) if raw.get(key, 0) is None)
        metadata = {key: value for key, value in raw.items() if key not in used and key != self.metadata_key}
        if self.metadata_key is not None and self.metadata_key in raw:
            try:
                explicit = _metadata_object(raw[self.metadata_key])
            except ValueError as error:
                raise RecordError(f'field "{self.metadata_key}" {error}') from None
            metadata.update(explicit or {})
        return fields.id, fields.problem, fields.reference(), json_values(metadata)


def _one_of(raw: Mapping[str, Any], keys: Sequence[str], flag: str | None) -> str | None:
    present = [key for key in keys if raw.get(key) is not None]
    if len(present) > 1:
        names = " and ".join(f'"{key}"' for key in present)
        choose = f"; name the one to use with {flag}" if flag else ""
        raise RecordError(f"ambiguous: both {names} are set{choose}; {_found(raw)}")
    return present[0] if present else None


def _found(raw: Mapping[str, Any]) -> str:
    return "fields found: " + (", ".join(f'"{key}"' for key in raw) or "none")


def _describe(error: ValidationError, chosen: Mapping[str, str | None]) -> str:
    """The first problem pydantic found, named by the record's own field."""
    first = error.errors()[0]
    role = str(first["loc"][0]) if first["loc"] else ""
    message = str(first.get("ctx", {}).get("error", first["msg"]))
    if not role:
        # A model-level check names its role at the start of the message.
        role, _, message = message.partition(": ")
    field = chosen.get(role) or role
    if message == "missing":
        return f'missing field "{field}"'
    return f'field "{field}" {message}'


def json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON can hold them: dates as ISO text, NaN as null; binary data (images)
    is left out, as nothing downstream can show it."""
    converted: dict[str, Any] = {}
    for key, value in values.items():
        keep, item = _json_value(value)
        if keep:
            converted[str(key)] = item
    return converted


def _json_value(value: Any) -> tuple[bool, Any]:
    if value is None or isinstance(value, str | bool | int):
        return True, value
    if isinstance(value, float):
        return True, value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return True, value.isoformat()
    if isinstance(value, Mapping):
        return True, json_values(value)
    if isinstance(value, list | tuple):
        items = [_json_value(item) for item in value]
        return True, [item for keep, item in items if keep]
    return False, None


_GENERIC = RecordFormat(
    "generic", _BoxedFields, ("id",), ("problem",), ("answer",), ("solution",), metadata_key="metadata"
)
FORMATS: dict[FormatName, RecordFormat] = {
    "generic": _GENERIC,
    "math": RecordFormat("math", _BoxedFields, ("unique_id",), ("problem",), ("answer",), ("solution",), True),
    "aime": RecordFormat(
        "aime", _BoxedFields, ("id", "ID"), ("problem", "Problem"), ("answer", "Answer"), ("solution", "Solution"), True
    ),
    "gsm8k": RecordFormat("gsm8k", _Gsm8kFields, ("id",), ("question",), ("answer",)),
    "olympiad": RecordFormat("olympiad", _OlympiadFields, ("id",), ("question", "problem"), ("final_answer",)),
}


def _is_gsm8k(raw: Mapping[str, Any]) -> bool:
    answer = raw.get("answer")
    return "question" in raw and isinstance(answer, str) and "####" in answer


def _is_aime(raw: Mapping[str, Any]) -> bool:
    keys = set(raw)
    return {"ID", "Problem"} <= keys or ({"id", "problem", "answer"} <= keys and bool(keys & {"year", "url"}))


# The fields that give each native format away; a record matching none with a "problem" is generic.
_SIGNATURES: dict[FormatName, Callable[[Mapping[str, Any]], bool]] = {
    "math": lambda raw: "unique_id" in raw,
    "olympiad": lambda raw: "final_answer" in raw,
    "gsm8k": _is_gsm8k,
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
    if "problem" in raw or fields_named:
        return _GENERIC
    raise RecordError(
        "no known dataset format has these fields; name them with --problem-field and --answer-field"
        f" (and --id-field), or choose --format; {_found(raw)}"
    )
