"""What the harness tells stderr while it runs: log lines and timed phases."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(label: str, action: Callable[[], T]) -> tuple[T, float]:
    log(f"{label}...")
    started = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - started
    log(f"{label}: {seconds:.1f} s")
    return value, seconds


async def timed_async(label: str, action: Awaitable[T]) -> tuple[T, float]:
    log(f"{label}...")
    started = time.perf_counter()
    value = await action
    seconds = time.perf_counter() - started
    log(f"{label}: {seconds:.1f} s")
    return value, seconds
