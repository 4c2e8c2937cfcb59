"""Service metrics, exported in Prometheus format by Ray's metrics agent on each node.

Ray prefixes every name with ``ray_`` and counters with ``_total``:
``cot_transfer_rpc_requests`` is scraped as ``ray_cot_transfer_rpc_requests_total``. vLLM's
own engine metrics (running and waiting requests, KV-cache use, prefix-cache queries and
hits) are forwarded by vLLM's Ray stat logger as ``ray_vllm_*`` rather than re-invented here.

The data planes record through ``ServiceMetrics``; ``NO_METRICS`` keeps them Ray-free in
unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def experiment_progress(self, experiment: str, rows_done: int, rows_expected: int) -> None: ...

    def experiment_unlock_rates(self, experiment: str, rates: Mapping[float, float]) -> None: ...

    def experiments_running(self, count: int) -> None: ...

    def backpressure_retry(self, deployment: str) -> None: ...


class _NoMetrics:
    def rpc_finished(self, method: str, code: str, duration_s: float) -> None:
        return None

    def time_to_first_prefix(self, duration_s: float) -> None:
        return None

    def tokens(self, model: str, prompt: int, generated: int) -> None:
        return None

    def completions(self, model: str, count: int) -> None:
        return None

    def aborted(self, model: str) -> None:
        return None

    def graded(self, grader: str, total: int, correct: int) -> None:
        return None

    def experiment_progress(self, experiment: str, rows_done: int, rows_expected: int) -> None:
        return None

    def experiment_unlock_rates(self, experiment: str, rates: Mapping[float, float]) -> None:
        return None

    def experiments_running(self, count: int) -> None:
        return None

    def backpressure_retry(self, deployment: str) -> None:
        return None


NO_METRICS: ServiceMetrics = _NoMetrics()


class RayServiceMetrics:
    """Ray metrics; must be created inside a Ray worker (a Serve replica)."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        def counter(name: str, description: str, tags: Sequence[str]) -> Any:
            return Counter(name, description=description, tag_keys=tuple(tags))

        self._requests = counter(
            "cot_transfer_rpc_requests", "RPCs by method and gRPC status code.", ("method", "code")
        )
        self._duration = Histogram(
            "cot_transfer_rpc_duration_seconds",
            description="Whole RPC time, to the last message of a stream.",
            boundaries=list(LATENCY_BUCKETS_S),
            tag_keys=("method",),
        )
        self._first_prefix = Histogram(
            "cot_transfer_time_to_first_prefix_seconds",
            description="StreamPrefixes: time from the request to the first prefix message.",
            boundaries=list(LATENCY_BUCKETS_S),
        )
        self._prompt_tokens = counter("cot_transfer_prompt_tokens", "Prompt tokens sent to an engine.", ("model",))
        self._generated_tokens = counter("cot_transfer_generated_tokens", "Tokens an engine generated.", ("model",))
        self._completions = counter("cot_transfer_completions", "Sampled completions generated.", ("model",))
        self._aborts = counter(
            "cot_transfer_engine_aborts",
            "Engine requests aborted because the caller cancelled or timed out.",
            ("model",),
        )
        self._graded = counter("cot_transfer_samples_graded", "Completions graded.", ("grader",))
        self._correct = counter("cot_transfer_samples_correct", "Completions graded correct.", ("grader",))
        self._rows_done = Gauge(
            "cot_transfer_experiment_rows_done",
            description="Transfer.Run: (problem, fraction) results finished.",
            tag_keys=("experiment",),
        )
        self._rows_expected = Gauge(
            "cot_transfer_experiment_rows_expected",
            description="Transfer.Run: (problem, fraction) results the run will produce.",
            tag_keys=("experiment",),
        )
        self._unlock_rate = Gauge(
            "cot_transfer_experiment_unlock_rate",
            description="Transfer.Run: unlock rate so far, per truncation fraction.",
            tag_keys=("experiment", "fraction"),
        )
        self._running = Gauge("cot_transfer_experiments_running", description="Transfer.Run streams in progress.")
        self._backpressure_retries = counter(
            "cot_transfer_backpressure_retries",
            "Transfer.Run calls to a model deployment that found its queue full and were retried after a backoff.",
            ("deployment",),
        )

    def rpc_finished(self, method: str, code: str, duration_s: float) -> None:
        self._requests.inc(1, tags={"method": method, "code": code})
        self._duration.observe(duration_s, tags={"method": method})

    def time_to_first_prefix(self, duration_s: float) -> None:
        self._first_prefix.observe(duration_s)

    def tokens(self, model: str, prompt: int, generated: int) -> None:
        if prompt:
            self._prompt_tokens.inc(prompt, tags={"model": model})
        if generated:
            self._generated_tokens.inc(generated, tags={"model": model})

    def completions(self, model: str, count: int) -> None:
        if count:
            self._completions.inc(count, tags={"model": model})

    def aborted(self, model: str) -> None:
        self._aborts.inc(1, tags={"model": model})

    def graded(self, grader: str, total: int, correct: int) -> None:
        if total:
            self._graded.inc(total, tags={"grader": grader})
        if correct:
            self._correct.inc(correct, tags={"grader": grader})

    def experiment_progress(self, experiment: str, rows_done: int, rows_expected: int) -> None:
        self._rows_done.set(rows_done, tags={"experiment": experiment})
        self._rows_expected.set(rows_expected, tags={"experiment": experiment})

    def experiment_unlock_rates(self, experiment: str, rates: Mapping[float, float]) -> None:
        for fraction, rate in rates.items():
            self._unlock_rate.set(rate, tags={"experiment": experiment, "fraction": f"{fraction:g}"})

    def experiments_running(self, count: int) -> None:
        self._running.set(count)

    def backpressure_retry(self, deployment: str) -> None:
        self._backpressure_retries.inc(1, tags={"deployment": deployment})
