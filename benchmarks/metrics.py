"""Reading the service's Prometheus endpoints: samples parsed by ``prometheus_client.parser``."""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from benchmarks.progress import log

# Ray's metrics agents export every 10 s (left as it is: a shorter interval costs CPU the served
# run would feel); counters count as settled once unchanged for longer than that.
COUNTER_SETTLE_S = 15.0


def _samples(exposition: str, name: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                yield sample


def metric_sum(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of ``name`` (exact sample name) whose labels include ``labels``."""
    wanted = labels or {}
    return (
        sum(
            sample.value
            for sample in _samples(exposition, name)
            if all(sample.labels.get(key) == value for key, value in wanted.items()) and not math.isnan(sample.value)
        )
        + 0.0
    )


def metric_label_values(exposition: str, name: str, label: str) -> list[str]:
    """The values ``label`` takes on the samples of ``name``."""
    return [sample.labels[label] for sample in _samples(exposition, name) if label in sample.labels]


@dataclass(frozen=True)
class PrefixCacheCounters:
    queries: float
    hits: float

    @property
    def computed(self) -> float:
        return self.queries - self.hits

    def minus(self, earlier: PrefixCacheCounters) -> PrefixCacheCounters:
        return PrefixCacheCounters(self.queries - earlier.queries, self.hits - earlier.hits)


def prefix_cache_counters(exposition: str, model_name: str, prefix: str = "vllm_") -> PrefixCacheCounters:
    """The prefix-cache counters of one model; ``prefix`` is ``vllm:`` in vLLM's own in-process registry."""
    labels = {"model_name": model_name}
    return PrefixCacheCounters(
        queries=metric_sum(exposition, f"{prefix}prefix_cache_queries_total", labels),
        hits=metric_sum(exposition, f"{prefix}prefix_cache_hits_total", labels),
    )


def scrape(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode("utf-8"))


def settled_counters(url: str, model_name: str, timeout_s: float = 180.0) -> PrefixCacheCounters:
    """The weak engine's prefix-cache counters once they stop moving (metrics export lags)."""
    deadline = time.monotonic() + timeout_s
    last = prefix_cache_counters(scrape(url), model_name)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2.0)
        current = prefix_cache_counters(scrape(url), model_name)
        if current != last:
            last, stable_since = current, time.monotonic()
        elif time.monotonic() - stable_since >= COUNTER_SETTLE_S:
            return current
    log(f"warning: the prefix-cache counters of {model_name} did not settle in {timeout_s:.0f} s")
    return last


def weak_token_counters(url: str, model_name: str) -> dict[str, float]:
    text = scrape(url)
    labels = {"model_name": model_name}
    return {
        "prompt_tokens": metric_sum(text, "vllm_prompt_tokens_total", labels),
        "generation_tokens": metric_sum(text, "vllm_generation_tokens_total", labels),
        "preemptions": metric_sum(text, "vllm_num_preemptions_total", labels),
    }


def block_size_from_metrics(ray_metrics_url: str) -> list[int]:
    """The block sizes vLLM reports in ``ray_vllm_cache_config_info`` on Ray's own endpoint."""
    try:
        text = scrape(ray_metrics_url)
    except OSError:
        return []
    return sorted({int(value) for value in metric_label_values(text, "ray_vllm_cache_config_info", "block_size")})
