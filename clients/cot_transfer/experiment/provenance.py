"""Where a run came from: when it ran, with what tool, code and service (run.json's ``provenance``)."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "cot-transfer"


def tool_version() -> str:
    """The installed cot-transfer's version ("unknown" when run from a tree that is not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
