"""A frozen dataclass as the JSON-ready dict its ``to_dict`` writes into results files.

The keys are the fields in declaration order: results files (``summary.json``) are compared
across versions, key order included, so a field's place in its class is its place in the file.
"""

from __future__ import annotations

import enum
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def json_fields(record: DataclassInstance, **intervals: tuple[str, str]) -> dict[str, Any]:
    """``record``'s fields, name -> JSON-ready value: an enum as its value, a nested record as
    its ``to_dict()``, a tuple as a list. Each ``key=(low, high)`` of ``intervals`` writes the
    two fields ``low`` and ``high`` as one ``key: {"low": ..., "high": ...}`` where ``low`` stood."""
    joined = {low: (key, high) for key, (low, high) in intervals.items()}
    highs = {high for _, high in intervals.values()}
    data: dict[str, Any] = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name in joined:
            key, high = joined[field.name]
            data[key] = {"low": value, "high": getattr(record, high)}
        elif field.name not in highs:
            data[field.name] = _json_ready(value)
    return data


def _json_ready(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_ready(item) for item in value]
    to_dict = getattr(value, "to_dict", None)
    return value if to_dict is None else to_dict()
