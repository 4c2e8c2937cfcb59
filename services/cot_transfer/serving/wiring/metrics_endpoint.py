"""One clean Prometheus endpoint for the service, gathered from every Ray node.

Ray's metrics agents expose each node's metrics with Ray's own labels (``WorkerId``,
``NodeAddress``, ``SessionName``, ...) on every series and a ``ray_`` prefix on every name.
This endpoint keeps the service's own families and vLLM's engine families, drops Ray's
per-process labels (summing the series they split, which is exact for counters, histograms
and the additive gauges kept here), and drops Ray's ``ray_`` prefix:
``ray_cot_transfer_*`` -> ``cot_transfer_*``, and vLLM's engine families (vLLM's
``vllm:name``, which Ray exports as ``ray_vllm_name``) -> ``vllm_name``, for the families in
``VLLM_FAMILIES``. Ray's full exposition stays on each
node's metrics port for platform dashboards.

Two more things make it a conventional Prometheus endpoint: every family the service declares
(``metrics.FAMILIES``) is there from the first scrape, at zero where it has no labels, before
Ray has exported anything (so an ``absent()`` alert tells a fresh service from a dead one), and
the per-experiment series of experiments that ended long ago are left out (``ExperimentSeries``),
so the page stays bounded however many runs were made. Parsing and merging run in a worker
thread: a large exposition must not hold the event loop that also serves gRPC.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from cot_transfer.serving.common.metrics import EXPERIMENT_LABEL, Family

RAY_PROCESS_LABELS = frozenset(
    {
        "Component",
        "NodeAddress",
        "SessionName",
        "Version",
        "WorkerId",
        "JobId",
        "otel_scope_name",
        "otel_scope_schema_url",
        "otel_scope_version",
    }
)
RENAMED_LABELS = {"ReplicaId": "replica"}
_SERVICE_PREFIX = "ray_cot_transfer_"
# The engine families an operator watches; the rest of vLLM's set stays on the node endpoints
# (some of its names, e.g. a histogram called iteration_tokens_total, break Prometheus naming).
VLLM_FAMILIES = frozenset(
    {
        "vllm_num_requests_running",
        "vllm_num_requests_waiting",
        "vllm_kv_cache_usage_perc",
        "vllm_prefix_cache_queries",
        "vllm_prefix_cache_hits",
        "vllm_prompt_tokens",
        "vllm_generation_tokens",
        "vllm_num_preemptions",
        "vllm_time_to_first_token_seconds",
        "vllm_e2e_request_latency_seconds",
        "vllm_request_queue_time_seconds",
    }
)


def public_name(ray_name: str) -> str | None:
    """The name a family is exposed under here, or None when it is not exposed."""
    name = ray_name.removeprefix("ray_")
    if ray_name.startswith(_SERVICE_PREFIX) or name in VLLM_FAMILIES:
        return name
    return None


@dataclass
class _Family:
    name: str
    kind: str
    documentation: str
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def merge_expositions(
    texts: Iterable[str],
    declared: Sequence[Family] = (),
    experiment_shown: Callable[[str], bool] | None = None,
) -> str:
    """Merges node expositions into one clean exposition (text format 0.0.4).

    ``declared`` families missing from every node are added empty (an unlabelled one at zero);
    with ``experiment_shown``, series whose experiment label it refuses are dropped.
    """
    families: dict[str, _Family] = {}
    for spec in declared:
        families[spec.name] = _declared_family(spec)
    for text in texts:
        for family in text_string_to_metric_families(text):
            name = public_name(family.name)
            if name is None or family.type not in {"counter", "gauge", "histogram"}:
                continue
            merged = families.setdefault(name, _Family(name, family.type, family.documentation))
            for sample in family.samples:
                suffix = sample.name.removeprefix(family.name)
                if suffix == "_created":
                    continue
                experiment = sample.labels.get(EXPERIMENT_LABEL)
                if experiment is not None and experiment_shown is not None and not experiment_shown(experiment):
                    continue
                labels = tuple(
                    sorted(
                        (RENAMED_LABELS.get(key, key), value)
                        for key, value in sample.labels.items()
                        if key not in RAY_PROCESS_LABELS
                    )
                )
                key = (name + suffix, labels)
                merged.samples[key] = merged.samples.get(key, 0.0) + sample.value
    return "".join(_format_family(family) for _, family in sorted(families.items()))


def _declared_family(spec: Family) -> _Family:
    family = _Family(spec.name, spec.kind, spec.description)
    if spec.tags:
        return family  # a labelled family has no series until a label value is recorded
    if spec.kind == "counter":
        family.samples[(spec.name + "_total", ())] = 0.0
    elif spec.kind == "gauge":
        family.samples[(spec.name, ())] = 0.0
    else:
        for bound in (*spec.boundaries, math.inf):
            family.samples[(spec.name + "_bucket", (("le", _format_bound(bound)),))] = 0.0
        family.samples[(spec.name + "_sum", ())] = 0.0
        family.samples[(spec.name + "_count", ())] = 0.0
    return family


def _format_bound(bound: float) -> str:
    # As Ray's exporter writes bucket bounds, so a declared zero bucket and a real one merge.
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _format_family(family: _Family) -> str:
    # Text format 0.0.4 names a counter's HELP and TYPE lines after its samples (``x_total``).
    header_name = family.name + "_total" if family.kind == "counter" else family.name
    lines = [
        f"# HELP {header_name} {_escape_help(family.documentation)}",
        f"# TYPE {header_name} {family.kind}",
    ]
    for (sample_name, labels), value in sorted(family.samples.items(), key=_sample_order):
        label_text = ",".join(f'{key}="{_escape_label(value_)}"' for key, value_ in labels)
        lines.append(f"{sample_name}{{{label_text}}} {_format_value(value)}" if labels else f"{sample_name} {value}")
    return "\n".join(lines) + "\n"


def _sample_order(item: tuple[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[object, ...]:
    (sample_name, labels), _ = item
    # Buckets sort by their upper bound so the exposition reads in order.
    plain = tuple((key, value) for key, value in labels if key != "le")
    bound = next((float(value) for key, value in labels if key == "le"), -math.inf)
    return (plain, sample_name, bound)


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def node_metric_urls() -> list[str]:
    """Metrics endpoints of the alive Ray nodes."""
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def _fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode("utf-8"))


async def gather_exposition(
    urls: Sequence[str],
    timeout_s: float = 5.0,
    declared: Sequence[Family] = (),
    experiment_shown: Callable[[str], bool] | None = None,
) -> str:
    """Fetches every node's exposition; a node that does not answer is left out, not fatal.
    Everything but the awaiting runs in worker threads."""
    results = await asyncio.gather(*(asyncio.to_thread(_fetch, url, timeout_s) for url in urls), return_exceptions=True)
    texts = [text for text in results if isinstance(text, str)]
    return await asyncio.to_thread(merge_expositions, texts, declared, experiment_shown)
