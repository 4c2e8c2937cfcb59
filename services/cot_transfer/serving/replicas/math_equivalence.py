"""Math answer equivalence under a time limit: math-verify comparisons in a kill-on-timeout pool.

Some inputs (huge binomials, high powers of sums) keep sympy busy for hours, and a thread
cannot be stopped, so each comparison runs in a pebble worker process; one that overruns its
time limit is killed with its worker and pebble starts a fresh one. Workers are spawned, not
forked: a serving process holds gRPC and Ray threads that a fork would copy mid-operation.
They start on first use and import sympy and math-verify; the serving process itself does not.

When no worker can start (no way to spawn a process, a sandbox), the pool compares in the
calling thread instead, with only the expression guards of ``math_compare``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import threading
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeoutError

import pebble

from cot_transfer.serving.replicas.math_outcome import Comparison, Outcome

DEFAULT_MATH_TIMEOUT_SECONDS = 5.0
# A spawned worker imports sympy and math-verify before its first comparison; a task's own
# time limit starts only once a worker has picked it up.
_WORKER_STARTUP_SECONDS = 60.0
# A runaway comparison (huge numbers) would otherwise take the host's memory with it.
_WORKER_MEMORY_LIMIT_BYTES = 4 * 1024**3

_logger = logging.getLogger(__name__)


def _start_worker() -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_LIMIT_BYTES, _WORKER_MEMORY_LIMIT_BYTES))
    from cot_transfer.serving.replicas.math_compare import silence_timeouts_disabled_notice

    silence_timeouts_disabled_notice()


def _compare_in_worker(extracted: str, reference: str) -> Comparison:
    from cot_transfer.serving.replicas.math_compare import compare_math

    return compare_math(extracted, reference)


class MathEquivalencePool:
    """Worker processes shared by all threads of a process; ``compare`` is safe from any thread
    and blocks for the comparison (in async code, call it through ``asyncio.to_thread``)."""

    def __init__(
        self, max_workers: int, timeout_seconds: float = DEFAULT_MATH_TIMEOUT_SECONDS, in_process: bool = False
    ) -> None:
        """``in_process``: compare in the calling thread, with no time limit (for tests, and what
        the pool falls back to when no worker can start)."""
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.timeout_seconds = timeout_seconds
        self.owner_pid = os.getpid()
        self._max_workers = max_workers
        self._pool: pebble.ProcessPool | None = None
        self._in_process = in_process
        self._lock = threading.Lock()

    def compare(self, extracted: str, reference: str) -> Comparison:
        """The verdict on ``extracted`` against ``reference``; never raises. A comparison that
        overruns the time limit, or whose worker dies, comes back as TIMEOUT or ERROR."""
        pool = self._worker_pool()
        if pool is None:
            return _compare_in_worker(extracted, reference)
        try:
            future = pool.schedule(_compare_in_worker, args=(extracted, reference), timeout=self.timeout_seconds)
        except (OSError, RuntimeError) as error:
            return self._compare_in_process(error, extracted, reference)
        try:
            comparison: Comparison = future.result(timeout=_WORKER_STARTUP_SECONDS + self.timeout_seconds)
        except FutureTimeoutError:
            future.cancel()
            return Comparison(Outcome.TIMEOUT, f"no verdict within {self.timeout_seconds:g} s")
        except (pebble.ProcessExpired, CancelledError) as error:
            return Comparison(Outcome.ERROR, f"the comparison's worker died: {error}")
        except OSError as error:
            return self._compare_in_process(error, extracted, reference)
        except Exception as error:  # raised in the worker, outside the comparison (an import, say)
            return Comparison(Outcome.ERROR, f"{type(error).__name__}: {error}")
        return comparison

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.stop()
                self._pool.join()
                self._pool = None

    def _worker_pool(self) -> pebble.ProcessPool | None:
        with self._lock:
            if self._in_process:
                return None
            if self._pool is None:
                self._pool = pebble.ProcessPool(
                    max_workers=self._max_workers,
                    initializer=_start_worker,
                    context=multiprocessing.get_context("spawn"),
                )
            return self._pool

    def _compare_in_process(self, error: BaseException, extracted: str, reference: str) -> Comparison:
        with self._lock:
            if not self._in_process:
                _logger.warning(
                    "math-verify workers unavailable (%s); comparing in-process without a time limit", error
                )
                self._in_process = True
                from cot_transfer.serving.replicas.math_compare import silence_timeouts_disabled_notice

                silence_timeouts_disabled_notice()
        return _compare_in_worker(extracted, reference)


_shared: MathEquivalencePool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> MathEquivalencePool:
    """The process's pool, created on first use with up to four workers."""
    global _shared
    with _shared_lock:
        # A forked child must not share its parent's workers.
        if _shared is None or _shared.owner_pid != os.getpid():
            _shared = MathEquivalencePool(max_workers=max(1, min(4, os.cpu_count() or 1)))
        return _shared
