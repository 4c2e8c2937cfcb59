"""The model fingerprint hashes the weights' content (cached by path, size and mtime), a Hub
snapshot's revision, or an endpoint's model id plus its tokenizer folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cot_transfer.serving.replicas import fingerprint
from cot_transfer.serving.replicas.fingerprint import (
    CACHE_NAME,
    cache_file_for,
    endpoint_fingerprint,
    model_fingerprint,
    tokenizer_fingerprint,
)

TESTBED = Path(__file__).resolve().parents[2] / "models" / "testbed"


def _model_folder(root: Path, weights: bytes = b"\0" * 100) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"hidden_size": 64}))
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "model.safetensors").write_bytes(weights)
    return root


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each file the fingerprint hashes, once per read."""
    names: list[str] = []
    real = fingerprint.hashlib.file_digest

    def counting(handle, digest):  # type: ignore[no-untyped-def]
        names.append(Path(handle.name).name)
        return real(handle, digest)

    monkeypatch.setattr(fingerprint.hashlib, "file_digest", counting)
    return names


def test_the_testbed_strong_and_weak_models_differ(tmp_path: Path) -> None:
    # Same architecture, same file names and sizes: only the weights' content tells them apart.
    strong, weak = (model_fingerprint(TESTBED / name, cache_file=tmp_path / "c.json") for name in ("strong", "weak"))
    assert (TESTBED / "strong" / "model.safetensors").stat().st_size == (
        TESTBED / "weak" / "model.safetensors"
    ).stat().st_size
    assert len(strong) == len(weak) == 16 and strong != weak


def test_weights_of_the_same_name_and_size_but_other_content_change_it(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m", b"\0" * 100)
    first = model_fingerprint(folder)
    (folder / "model.safetensors").write_bytes(b"\1" * 100)
    assert model_fingerprint(folder) != first
    (folder / "model.safetensors").write_bytes(b"\0" * 100)
    assert model_fingerprint(folder) == first


def test_weights_are_hashed_once_then_read_from_the_cache_beside_the_model(tmp_path: Path, hashed: list[str]) -> None:
    folder = _model_folder(tmp_path / "m")
    first = model_fingerprint(folder)
    assert "model.safetensors" in hashed and (folder / CACHE_NAME).is_file()
    hashed.clear()
    assert model_fingerprint(folder) == first and hashed == []  # a stat per file, no read
    os.utime(folder / "model.safetensors", ns=(1, 1))  # a touched file is read again
    assert model_fingerprint(folder) == first and hashed == ["model.safetensors"]
    # The cache file is not part of the model.
    assert model_fingerprint(folder, cache_file=tmp_path / "other.json") == first


def test_a_read_only_folder_keeps_its_digests_in_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model_folder(tmp_path / "m")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fingerprint.os, "access", lambda path, mode: False)
    assert cache_file_for(folder) == tmp_path / "xdg" / "cot-transfer" / "fingerprints.json"
    model_fingerprint(folder)
    assert not (folder / CACHE_NAME).exists()
    cached = json.loads((tmp_path / "xdg" / "cot-transfer" / "fingerprints.json").read_text())
    assert str((folder / "model.safetensors").resolve()) in cached


def test_a_hub_snapshot_is_fingerprinted_by_its_revision(tmp_path: Path) -> None:
    revision, other = "a" * 40, "b" * 40
    one = _model_folder(tmp_path / "models--org--name" / "snapshots" / revision)
    two = _model_folder(tmp_path / "models--org--name" / "snapshots" / other)
    assert model_fingerprint(one) != model_fingerprint(two)
    assert not (one / CACHE_NAME).exists()  # nothing read: the revision names the content


def test_an_endpoint_model_is_its_served_id_plus_its_tokenizer_folder(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "tok")
    (folder / "model.safetensors").unlink()
    base = endpoint_fingerprint("served-1", folder)
    assert base != endpoint_fingerprint("served-2", folder)
    assert endpoint_fingerprint("served-1", None) != base
    before = tokenizer_fingerprint(folder)
    (folder / "tokenizer.json").write_text('{"model": {"x": 1}}')
    assert tokenizer_fingerprint(folder) != before and endpoint_fingerprint("served-1", folder) != base


def test_with_no_writable_cache_a_file_is_still_read_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashed: list[str]
) -> None:
    folder = _model_folder(tmp_path / "m", b"\2" * 64)
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))  # its cache cannot be made
    monkeypatch.setattr(fingerprint.os, "access", lambda path, mode: False)
    first = model_fingerprint(folder)
    assert hashed.count("model.safetensors") == 1
    assert model_fingerprint(folder) == first and hashed.count("model.safetensors") == 1
