"""Shared helpers for validating deploy/ offline: YAML loading, CRD schemas, kustomize rendering."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# CRD schemas live beside the clone on CI (../shared/schemas); a user's clone has none.
SCHEMAS = REPO.parent / "shared" / "schemas"
OVERLAYS = ("cpu", "gpu")
Manifest = dict[str, Any]


# The C loader when PyYAML has it: the RayService CRD alone is 18,000 lines.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(path: Path) -> list[Manifest]:
    return [document for document in yaml.load_all(path.read_text(), Loader=_Loader) if document is not None]


def _strict(schema: Any) -> Any:
    """Rejects unknown fields like `kubectl apply` (strict field validation) does; structural CRD
    schemas leave additionalProperties open because the API server prunes or rejects unknown fields."""
    if isinstance(schema, dict):
        node = {key: _strict(value) for key, value in schema.items()}
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], Manifest]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of each CRD version in SCHEMAS."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"no CRD schemas at {SCHEMAS}: they sit beside the clone on CI (shared/schemas), not in it")
    return _load_crd_schemas()


@functools.cache
def _load_crd_schemas() -> dict[tuple[str, str], Manifest]:
    schemas: dict[tuple[str, str], Manifest] = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        for crd in load_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def kustomize(path: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered (kubectl kustomize)")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document is not None]


@pytest.fixture(scope="session")
def rendered() -> Iterator[dict[str, list[Manifest]]]:
    """The rendered overlays, by name (kubectl kustomize deploy/overlays/<name>)."""
    yield {name: kustomize(DEPLOY / "overlays" / name) for name in OVERLAYS}


def only(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]
