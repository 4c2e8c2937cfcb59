"""The serving-overhead phase: one ``Complete`` call through gRPC + Ray Serve and straight into an
in-process ``ReceiverServer`` on an engine with the same config, interleaved in pairs."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from benchmarks.record import Overhead
from benchmarks.stack import ServedStack, uses_gpu
from cot_transfer.client import Sampling
from cot_transfer.domain.requests import CompletionRequest, Problem
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.common.serving_config import ServingConfig

WARM_UP_PAIRS = 5


def percentile(values: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile (``share`` in [0, 1]), numpy's default method."""
    if not values:
        raise ValueError("percentile of no values")
    return float(np.quantile(values, share))


async def serving_overhead(
    stack: ServedStack,
    config: ServingConfig,
    problem: Problem,
    calls: int,
    max_tokens: int,
    gpu_memory_utilization: float = 0.15,
) -> Overhead:
    """Paired latencies of one Complete call served vs in-process; the differences are the overhead."""
    from cot_transfer.engine.vllm_engine import VLLMEngine
    from cot_transfer.serving.replicas.receiver_server import ReceiverServer

    weak = config.weak.sampling
    # A fixed seed: both engines (same weights, same config) generate the same tokens.
    sampling = SamplingParams(weak.temperature, weak.top_p, max_tokens, seed=1234)
    request = CompletionRequest(
        problem=problem.problem,
        prefix="",
        n=1,
        sampling=sampling,
        reference_answer=problem.answer,
        grader=config.default_grader,
    )
    client_sampling = Sampling(sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed)
    engine_config = config.weak.engine
    if uses_gpu(config):
        # The served engines hold their share of the GPU; this third engine gets a small KV cache.
        engine_config = engine_config.model_copy(update={"gpu_memory_utilization": gpu_memory_utilization})
    engine = VLLMEngine(engine_config)
    started = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - started
    block_size = int(engine.llm.vllm_config.cache_config.block_size)
    max_num_seqs = int(engine.llm.vllm_config.scheduler_config.max_num_seqs)
    server = ReceiverServer(engine, config.weak.engine.name)
    served_ms: list[float] = []
    direct_ms: list[float] = []
    same_tokens = 0
    try:
        async with stack.client(120) as client:

            async def served() -> tuple[float, int]:
                began = time.perf_counter()
                result = await client.complete(
                    request.problem, reference_answer=request.reference_answer, n=1, sampling=client_sampling
                )
                return (time.perf_counter() - began) * 1000, sum(c.num_tokens for c in result.completions)

            async def direct() -> tuple[float, int]:
                began = time.perf_counter()
                result = await server.complete(request)
                return (time.perf_counter() - began) * 1000, sum(c.num_tokens for c in result.completions)

            for _ in range(WARM_UP_PAIRS):
                await served()
                await direct()
            for index in range(calls):
                # Alternate which goes first, so drift in the machine's load hits both alike.
                if index % 2 == 0:
                    served_result, direct_result = await served(), await direct()
                else:
                    direct_result, served_result = await direct(), await served()
                served_ms.append(served_result[0])
                direct_ms.append(direct_result[0])
                same_tokens += int(served_result[1] == direct_result[1])
    finally:
        await engine.shutdown()
    differences = [served - direct for served, direct in zip(served_ms, direct_ms, strict=True)]
    return Overhead(
        calls=calls,
        n=1,
        max_tokens=max_tokens,
        engine_start_s=start_s,
        block_size=block_size,
        max_num_seqs=max_num_seqs,
        pairs_with_equal_generated_tokens=same_tokens,
        served_ms_p50=percentile(served_ms, 0.5),
        served_ms_p99=percentile(served_ms, 0.99),
        direct_ms_p50=percentile(direct_ms, 0.5),
        direct_ms_p99=percentile(direct_ms, 0.99),
        overhead_ms_p50=percentile(differences, 0.5),
        overhead_ms_p99=percentile(differences, 0.99),
        overhead_ms_mean=sum(differences) / len(differences),
    )
