"""Service metrics, exported in Prometheus format by Ray's metrics agent on each node.

Ray prefixes every name with ``ray_`` and counters with ``_total``:
``cot_transfer_rpc_requests`` is scraped as ``ray_cot_transfer_rpc_requests_total``. vLLM's
own engine metrics (running and waiting requests, KV-cache use, prefix-cache queries and
hits) are forwarded by vLLM's Ray stat logger as ``ray_vllm_*`` rather than re-invented here.

The data planes record through ``ServiceMetrics``; ``NO_METRICS`` keeps them Ray-free in
unit tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Seconds; a CPU toy model answers in milliseconds, a GPU reasoning model streams for minutes.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class ServiceMetrics(Protocol):
    def rpc_finished(self, method: str, code: str, duration_s: float) -> None: ...

    def time_to_first_prefix(self, duration_s: float) -> None: ...

    def tokens(self, model: str, prompt: int, generated: int) -> None: ...

    def completions(self, model: str, count: int) -> None: ...

    def aborted(self, model: str) -> None: ...

    def graded(self, grader: str, total: int, correct: int) -> None: ...

    def grader_error(self, grader: str, reason: str) -> None: ...

    def experiment_progress(self, experiment: str, rows_done: int, rows_expected: int) -> None: ...

    def experiment_unlock_rates(self, experiment: str, rates: Mapping[float, float]) -> None: ...

    def experiments_running(self, count: int) -> None: ...

    def experiment_started(self, experiment: str) -> None: ...

    def experiment_ended(self, experiment: str) -> None: ...

    def backpressure_retry(self, deployment: str) -> None: ...


def _record_nothing(*args: object, **kwargs: object) -> None:
    return None


class _NoMetrics:
    """``ServiceMetrics`` that records nothing. Its methods are the protocol's, and only those: a
    name the protocol lacks is an AttributeError here as it would be on ``RayServiceMetrics``."""

    _methods = frozenset(name for name in vars(ServiceMetrics) if not name.startswith("_"))

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name in self._methods:
            return _record_nothing
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


NO_METRICS: ServiceMetrics = _NoMetrics()

EXPERIMENT_LABEL = "experiment"


class ExperimentSeries:
    """Which experiments' series the service's endpoint still shows: the running ones, and the
    ended ones for ``retention_s`` after their end (long enough for Prometheus to scrape the final
    values). Ray cannot delete a series, so the endpoint drops the others; this keeps the
    exposition, and this record, bounded by the experiments of the last ``retention_s`` instead of
    growing with every run ever made (an anonymous run adds a random id each time)."""

    def __init__(self, retention_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._retention_s = retention_s
        self._clock = clock
        self._running: dict[str, int] = {}
        self._ended_at: dict[str, float] = {}
        # The endpoint reads from a worker thread while the event loop records.
        self._lock = threading.Lock()

    def started(self, experiment: str) -> None:
        with self._lock:
            self._running[experiment] = self._running.get(experiment, 0) + 1
            self._ended_at.pop(experiment, None)

    def ended(self, experiment: str) -> None:
        with self._lock:
            left = self._running.get(experiment, 0) - 1
            if left > 0:
                self._running[experiment] = left
                return
            self._running.pop(experiment, None)
            self._ended_at[experiment] = self._clock()
            self._prune()

    def shown(self) -> frozenset[str]:
        with self._lock:
            self._prune()
            return frozenset(self._running) | frozenset(self._ended_at)

    def _prune(self) -> None:
        cutoff = self._clock() - self._retention_s
        for experiment in [name for name, ended in self._ended_at.items() if ended < cutoff]:
            del self._ended_at[experiment]


@dataclass(frozen=True)
class Family:
    """One of the service's metric families, as the service's endpoint exposes it."""

    name: str  # the public name (Ray exports it with a "ray_" prefix, counters with "_total")
    kind: str  # "counter", "gauge" or "histogram"
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family("cot_transfer_rpc_requests", "counter", "RPCs by method and gRPC status code.", ("method", "code")),
    Family(
        "cot_transfer_rpc_duration_seconds",
        "histogram",
        "Whole RPC time, to the last message of a stream.",
        ("method",),
        LATENCY_BUCKETS_S,
    ),
    Family(
        "cot_transfer_time_to_first_prefix_seconds",
        "histogram",
        "StreamPrefixes: time from the request to the first prefix message.",
        (),
        LATENCY_BUCKETS_S,
    ),
    Family("cot_transfer_prompt_tokens", "counter", "Prompt tokens sent to an engine.", ("model",)),
    Family("cot_transfer_generated_tokens", "counter", "Tokens an engine generated.", ("model",)),
    Family("cot_transfer_completions", "counter", "Sampled completions generated.", ("model",)),
    Family(
        "cot_transfer_engine_aborts",
        "counter",
        "Engine requests aborted because the caller cancelled or timed out.",
        ("model",),
    ),
    Family("cot_transfer_samples_graded", "counter", "Completions graded.", ("grader",)),
    Family("cot_transfer_samples_correct", "counter", "Completions graded correct.", ("grader",)),
    Family(
        "cot_transfer_grader_errors",
        "counter",
        "Answers graded not correct because the comparison failed (reason: error, timeout or refused).",
        ("grader", "reason"),
    ),
    Family(
        "cot_transfer_experiment_rows_done",
        "gauge",
        "Transfer.Run: (problem, fraction) results finished.",
        (EXPERIMENT_LABEL,),
    ),
    Family(
        "cot_transfer_experiment_rows_expected",
        "gauge",
        "Transfer.Run: (problem, fraction) results the run will produce.",
        (EXPERIMENT_LABEL,),
    ),
    Family(
        "cot_transfer_experiment_unlock_rate",
        "gauge",
        "Transfer.Run: unlock rate so far, per truncation fraction.",
        (EXPERIMENT_LABEL, "fraction"),
    ),
    Family("cot_transfer_experiments_running", "gauge", "Transfer.Run streams in progress."),
    Family(
        "cot_transfer_backpressure_retries",
        "counter",
        "Transfer.Run calls to a model deployment that found its queue full and were retried after a backoff.",
        ("deployment",),
    ),
)


class RayServiceMetrics:
    """Ray metrics; must be created inside a Ray worker (a Serve replica).

    ``experiments`` (the ingress's) is told when each experiment starts and ends, so the
    service's endpoint can drop the series of experiments that ended long ago.
    """

    def __init__(self, experiments: ExperimentSeries | None = None) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self._experiments = experiments
        made: dict[str, Any] = {}
        for family in FAMILIES:
            if family.kind == "counter":
                made[family.name] = Counter(family.name, description=family.description, tag_keys=family.tags)
            elif family.kind == "gauge":
                made[family.name] = Gauge(family.name, description=family.description, tag_keys=family.tags)
            else:
                made[family.name] = Histogram(
                    family.name,
                    description=family.description,
                    boundaries=list(family.boundaries),
                    tag_keys=family.tags,
                )
        self._requests = made["cot_transfer_rpc_requests"]
        self._duration = made["cot_transfer_rpc_duration_seconds"]
        self._first_prefix = made["cot_transfer_time_to_first_prefix_seconds"]
        self._prompt_tokens = made["cot_transfer_prompt_tokens"]
        self._generated_tokens = made["cot_transfer_generated_tokens"]
        self._completions = made["cot_transfer_completions"]
        self._aborts = made["cot_transfer_engine_aborts"]
        self._graded = made["cot_transfer_samples_graded"]
        self._correct = made["cot_transfer_samples_correct"]
        self._grader_errors = made["cot_transfer_grader_errors"]
        self._rows_done = made["cot_transfer_experiment_rows_done"]
        self._rows_expected = made["cot_transfer_experiment_rows_expected"]
        self._unlock_rate = made["cot_transfer_experiment_unlock_rate"]
        self._running = made["cot_transfer_experiments_running"]
        self._backpressure_retries = made["cot_transfer_backpressure_retries"]
        # An unlabelled family has a series from the start, so a scrape of a fresh service shows it.
        self._running.set(0)

    def rpc_finished(self, method: str, code: str, duration_s: float) -> None:
        self._requests.inc(1, tags={"method": method, "code": code})
        self._duration.observe(duration_s, tags={"method": method})

    def time_to_first_prefix(self, duration_s: float) -> None:
        self._first_prefix.observe(duration_s)

    def tokens(self, model: str, prompt: int, generated: int) -> None:
        _count(self._prompt_tokens, prompt, {"model": model})
        _count(self._generated_tokens, generated, {"model": model})

    def completions(self, model: str, count: int) -> None:
        _count(self._completions, count, {"model": model})

    def aborted(self, model: str) -> None:
        self._aborts.inc(1, tags={"model": model})

    def graded(self, grader: str, total: int, correct: int) -> None:
        _count(self._graded, total, {"grader": grader})
        _count(self._correct, correct, {"grader": grader})

    def grader_error(self, grader: str, reason: str) -> None:
        self._grader_errors.inc(1, tags={"grader": grader, "reason": reason})

    def experiment_progress(self, experiment: str, rows_done: int, rows_expected: int) -> None:
        self._rows_done.set(rows_done, tags={"experiment": experiment})
        self._rows_expected.set(rows_expected, tags={"experiment": experiment})

    def experiment_unlock_rates(self, experiment: str, rates: Mapping[float, float]) -> None:
        for fraction, rate in rates.items():
            self._unlock_rate.set(rate, tags={"experiment": experiment, "fraction": f"{fraction:g}"})

    def experiments_running(self, count: int) -> None:
        self._running.set(count)

    def experiment_started(self, experiment: str) -> None:
        if self._experiments is not None:
            self._experiments.started(experiment)

    def experiment_ended(self, experiment: str) -> None:
        if self._experiments is not None:
            self._experiments.ended(experiment)

    def backpressure_retry(self, deployment: str) -> None:
        self._backpressure_retries.inc(1, tags={"deployment": deployment})


def _count(counter: Any, amount: int, tags: dict[str, str]) -> None:
    # A Ray counter refuses an increment of 0, and a batch may well have nothing to add.
    if amount:
        counter.inc(amount, tags=tags)
