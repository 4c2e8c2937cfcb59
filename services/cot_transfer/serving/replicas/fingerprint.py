"""A model folder's fingerprint: what changes when the model behind a served name changes.

A resumed experiment must not mix results of two different models served under one name, so
GetInfo reports this fingerprint and the client's settings hash covers it. It hashes the files
that define the model's behaviour and are small (config.json, the generation config, the
tokenizer files, the chat template) and, for the weights, their names and sizes: hashing
gigabytes of weights would take minutes at every start, and a retrained or swapped checkpoint
changes at least its shard sizes or names in practice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Small files hashed in full; any of them may be missing.
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


def model_fingerprint(folder: str | Path) -> str:
    """16 hex digits; empty when ``folder`` is not a local model folder (nothing to vouch for)."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        return ""
    digest = hashlib.sha256()
    for name in CONTENT_FILES:
        path = root / name
        if path.is_file():
            digest.update(f"file {name}\n".encode())
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES):
            digest.update(f"weights {path.relative_to(root).as_posix()} {path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]
