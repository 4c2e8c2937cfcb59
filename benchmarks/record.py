"""The typed benchmark result: what ``benchmarks/results.json`` holds, block by block.

Field order is key order in the file: the headline keys first (``benchmarks.results.HEADLINE_KEYS``),
then the details. A phase that did not run is ``None`` (``null``), never left out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Replay(_Block):
    """The served run's weak prompts through ``WeakModel.Complete``."""

    requests: int
    completions: int
    seconds: float
    concurrency: int
    completions_per_s: float


class Overhead(_Block):
    calls: int
    n: int
    max_tokens: int
    engine_start_s: float
    block_size: int
    max_num_seqs: int
    pairs_with_equal_generated_tokens: int
    served_ms_p50: float
    served_ms_p99: float
    direct_ms_p50: float
    direct_ms_p99: float
    overhead_ms_p50: float
    overhead_ms_p99: float
    overhead_ms_mean: float


class Locust(_Block):
    exit_code: int
    users: int
    run_time: str
    n: int
    max_tokens: int
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    reports: str


class OfflineComparison(_Block):
    served_weak: Replay
    offline_llm_generate: dict[str, Any]
    served_vs_offline: float | None


class TwoReplicaRouting(_Block):
    """One router's run on two weak replicas, one per node (``benchmarks.two_replicas``)."""

    router: str
    stack_start_s: float
    seconds: float
    samples: int
    samples_per_s: float
    queries_tokens: float
    hits_tokens: float
    computed_tokens: float
    lower_bound_tokens: int
    block_size: int
    computed_tokens_per_node: list[float]
    nodes_with_weak_work: int
    prefill_ratio: float | None


class TwoReplicas(_Block):
    nodes: int
    replicas: int
    prefix_affinity: TwoReplicaRouting
    default: TwoReplicaRouting


class Prefill(_Block):
    weak_model: str
    queries_tokens: float
    hits_tokens: float
    computed_tokens: float
    weak_engine: dict[str, int]
    block_size_of_the_in_process_engine: int | None
    block_sizes_from_vllm_cache_config_info: list[int]
    # The bound's keys exist only where the block size is known.
    block_size: int | None = None
    prompt_tokens_expected: int | None = None
    lower_bound_tokens: int | None = None
    distinct_prompts: int | None = None
    distinct_prompt_tokens: int | None = None
    distinct_prompt_lower_bound_tokens: int | None = None
    ratio_vs_distinct_prompt_bound: float | None = None
    ratio_vs_no_cache: float | None = None

    @model_serializer(mode="wrap")
    def _without_an_unknown_bound(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.block_size is None:
            data = {key: value for key, value in data.items() if key in _PREFILL_MEASURED}
        return data


_PREFILL_MEASURED = frozenset(
    name for name, field in Prefill.model_fields.items() if field.is_required() or name.startswith("block_size_")
)


class Served(_Block):
    seconds: float
    strong_cots_done_s: float
    problems: int
    rows: int
    samples: int
    rows_per_s: float
    samples_per_s: float
    strong_solve_rate: float | None
    weak_potential_mean: float | None
    stack_start_s: float
    weak_engine_tokens: dict[str, float]
    weak_generated_tokens_per_s: float
    # This run's processes only (the harness, the serve command and its descendants).
    cpu_seconds_by_process: dict[str, float]


class Naive(_Block):
    backend: str
    strong_cots: str
    subset_problems: list[str]
    torch_threads: dict[str, Any]
    subset_rows: int
    subset_samples: int
    subset_weak_seconds: float
    subset_strong_seconds: float
    weak_seconds_per_sample: float
    subset_weak_generated_tokens: int
    weak_generated_tokens_per_s: float | None
    strong_seconds_per_problem: float
    weak_potential_mean_subset: float | None
    extrapolated_weak_seconds: float
    extrapolated_strong_seconds: float
    extrapolated: bool
    extrapolated_seconds: float
    extrapolated_rows_per_s: float | None
    extrapolated_samples_per_s: float | None


class RunInfo(_Block):
    date: str
    command: str
    workload_name: str
    workload: dict[str, Any]
    device: str
    config: str
    config_overrides: list[str]
    problems_file: str
    strong_sampling: dict[str, Any]
    weak_sampling: dict[str, Any]
    max_concurrent_completions: int


class Machine(_Block):
    cores: int | None
    cpu_model: str
    memory_gib: float | None
    load_before: float | None = None
    other_raylets_at_start: int = 0
    load_after: float | None = None


class BenchResult(_Block):
    speedup_vs_naive: float | None
    prefill_ratio: float | None
    serve_overhead_ms_p50: float | None
    serve_overhead_ms_p99: float | None
    locust_rps: float | None
    locust_failures: int | None
    # Served Transfer.Run weak samples per second over the offline LLM.generate script's completions
    # per second on the same weak prompts and n; None when the offline comparison did not run.
    served_vs_offline: float | None = None
    prefill_ratio_two_replicas: float | None = None
    prefill_ratio_two_replicas_default_router: float | None = None
    # Adaptive sampling against brute force at n_max (``--n-max``; ``benchmarks.adaptive``).
    adaptive_sample_ratio: float | None = None
    adaptive_decision_agreement: float | None = None
    adaptive_unlock_rates_within_brute_force_ci: bool | None = None
    # The offline script's wall time to every (problem, fraction) decision at n = n_max over the
    # served adaptive run's, and the share of decisions equal (``--decisions``; ``benchmarks.decisions``).
    decisions_speedup_vs_offline: float | None = None
    decisions_agreement_vs_offline: float | None = None
    run: RunInfo
    machine: Machine
    load_average_1m: dict[str, float]
    served: Served
    naive: Naive
    speedup_weak_only_vs_naive: float | None
    prefill: Prefill
    overhead: Overhead | None
    locust: Locust | None
    offline: OfflineComparison | None
    two_replicas: TwoReplicas | None = None
    # The adaptive comparison's details (``benchmarks.adaptive.AdaptiveComparison``).
    adaptive: dict[str, Any] | None = None
    # The decisions comparison's parts (``benchmarks.decisions.DecisionsComparison``).
    decisions: dict[str, Any] | None = None
    summary_lines: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
