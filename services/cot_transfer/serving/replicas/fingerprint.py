"""A model folder's fingerprint: what changes when the model behind a served name changes.

A resumed experiment must not mix results of two different models served under one name, so
GetInfo reports this fingerprint, the client's settings hash covers it, every row records it and
a run stops when it changes mid-run.

- A local folder: the SHA-256 of the content of every file that defines the model's behaviour:
  config.json, the generation config, the tokenizer files, the chat template and every weight
  file. Weights are hashed in full once: each file's digest is cached by (path, size, mtime_ns)
  in ``CACHE_NAME`` beside the model when that folder is writable, else in
  ``$XDG_CACHE_HOME/cot-transfer/fingerprints.json`` (``~/.cache`` by default), so a 60 GB
  checkpoint costs one read (about a minute at 1 GB/s) and later starts only ``stat`` it.
- A Hugging Face Hub snapshot (``.../models--org--name/snapshots/<revision>/``): the repository
  and the revision, which name the content already (nothing is read).
- A model on an OpenAI-compatible server (``endpoint_fingerprint``): the server's id of the model
  plus the content hash of the local tokenizer folder. Weaker: a server that swaps the weights
  behind an unchanged id and path goes unnoticed, since the weights are never seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from cot_transfer.engine.config import EngineConfig

logger = logging.getLogger(__name__)

# Small files that define behaviour besides the weights; any of them may be missing.
CONTENT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
# The per-file digest cache beside a writable model folder (git-ignored).
CACHE_NAME = ".cot-transfer-fingerprints.json"
_HUB_REVISION = re.compile(r"[0-9a-f]{40}")
# This process's digests by (resolved path, size, mtime_ns), beside the cache file: where neither
# the model folder nor the user cache can be written, a file is still read once per process, not
# at every GetInfo.
_DIGESTS: dict[tuple[str, int, int], str] = {}


# Engine settings that change what a model generates, not only how fast: the settings hash covers
# them (through GetInfo's ModelInfo.engine_settings). The EngineConfig fields, then the vLLM engine
# arguments that may come through engine_kwargs.
OUTPUT_ENGINE_FIELDS = ("dtype", "max_model_len", "seed")
OUTPUT_ENGINE_KWARGS = (
    "quantization",
    "kv_cache_dtype",
    "calculate_kv_scales",
    "load_format",
    "revision",
    "code_revision",
    "tokenizer_revision",
    "tokenizer_mode",
    "hf_overrides",
    "rope_scaling",
    "rope_theta",
    "generation_config",
    "override_generation_config",
    "max_logprobs",
    "logits_processors",
)


def output_engine_settings(engine: EngineConfig) -> dict[str, str]:
    """The configured settings among ``OUTPUT_ENGINE_FIELDS`` and ``OUTPUT_ENGINE_KWARGS``, each as
    its JSON text; empty for a model behind an endpoint (its server decides them)."""
    if engine.endpoint is not None:
        return {}
    settings = {name: getattr(engine, name) for name in OUTPUT_ENGINE_FIELDS}
    settings |= {name: engine.engine_kwargs[name] for name in OUTPUT_ENGINE_KWARGS if name in engine.engine_kwargs}
    return {name: json.dumps(value, sort_keys=True, default=str) for name, value in settings.items()}


def user_cache_file() -> Path:
    """Where digests go when the model folder is read-only."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cot-transfer" / "fingerprints.json"


def cache_file_for(root: Path) -> Path:
    """``CACHE_NAME`` in the model folder if this process may write there, else the user cache."""
    return root / CACHE_NAME if os.access(root, os.W_OK) else user_cache_file()


def hub_revision(root: Path) -> tuple[str, str] | None:
    """(repository folder, revision) when ``root`` is a Hub cache snapshot, else None."""
    in_hub_cache = root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--")
    if in_hub_cache and _HUB_REVISION.fullmatch(root.name):
        return root.parent.parent.name, root.name
    return None


class _DigestCache:
    """Each file's SHA-256 by resolved path, valid while its size and mtime_ns are unchanged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, Any] = {}
        self._changed = False
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._entries = loaded

    def digest(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        entry = self._entries.get(key)
        if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return str(entry["sha256"])
        value = _DIGESTS.get((key, stat.st_size, stat.st_mtime_ns))
        if value is None:
            with file.open("rb") as handle:
                value = hashlib.file_digest(handle, "sha256").hexdigest()
            _DIGESTS[(key, stat.st_size, stat.st_mtime_ns)] = value
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
        self._changed = True
        return value

    def save(self) -> None:
        """Atomically (another replica may write the same cache); a cache that cannot be written
        only costs a re-hash at the next start."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(self._entries, handle, sort_keys=True)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other users of a shared folder
            os.replace(temporary, self.path)
        except OSError as error:
            logger.warning(
                "model fingerprint cache %s not written (%s): the weights are hashed again next time", self.path, error
            )


def _content_files(root: Path, with_weights: bool) -> list[Path]:
    files = [root / name for name in CONTENT_FILES if (root / name).is_file()]
    if with_weights:
        files += sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    return files


def _hash_files(root: Path, files: list[Path], cache_file: Path | None) -> str:
    cache = _DigestCache(cache_file or cache_file_for(root))
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(root).as_posix()} {cache.digest(file)}\n".encode())
    cache.save()
    return digest.hexdigest()[:16]


def model_fingerprint(folder: str | Path, *, cache_file: Path | None = None) -> str:
    """16 hex digits; empty when ``folder`` is not a local model folder (nothing to vouch for).
    ``cache_file`` overrides where the per-file digests are kept."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        return ""
    snapshot = hub_revision(root)
    if snapshot is not None:
        return hashlib.sha256(f"hub {snapshot[0]} {snapshot[1]}".encode()).hexdigest()[:16]
    return _hash_files(root, _content_files(root, with_weights=True), cache_file)


def tokenizer_fingerprint(folder: str | Path, *, cache_file: Path | None = None) -> str:
    """The content hash of a tokenizer folder's files (config and tokenizer, no weights)."""
    root = Path(folder)
    files = _content_files(root, with_weights=False) if root.is_dir() else []
    return _hash_files(root, files, cache_file) if files else ""


def endpoint_fingerprint(served: str, tokenizer_folder: str | Path | None) -> str:
    """A model on an OpenAI-compatible server: the engine's id of what the server serves
    (``OpenAIEngine.fingerprint``) plus the local tokenizer folder's content hash."""
    tokenizer = tokenizer_fingerprint(tokenizer_folder) if tokenizer_folder is not None else ""
    return hashlib.sha256(f"endpoint {served}\ntokenizer {tokenizer}".encode()).hexdigest()[:16]
