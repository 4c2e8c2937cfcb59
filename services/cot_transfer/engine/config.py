"""Engine settings (part of the serving config file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Local path of a Hugging Face model folder (config.json, weights, tokenizer).")
    served_name: str = Field(default="", description="Name reported in results and metrics; the folder name if empty.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weight and activation dtype."
    )
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length (prompt + generation); the model's own if unset."
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="Share of accelerator memory the engine may take. On CPU vLLM applies it to host memory,"
        " so keep it low there (e.g. 0.2).",
    )
    cpu_kv_cache_space_gib: float | None = Field(
        default=None,
        gt=0,
        description="KV-cache size on CPU (sets VLLM_CPU_KVCACHE_SPACE); ignored on GPU.",
    )
    enable_prefix_caching: bool = Field(
        default=True, description="Share KV blocks between requests with a common prompt prefix."
    )
    max_num_seqs: int | None = Field(default=None, ge=1, description="Sequences the engine schedules at once.")
    enable_chunked_prefill: bool | None = Field(
        default=None,
        description="Split long prefills across steps (vLLM's default: on). The CPU build crashes its engine when"
        " a request with a sampling seed has its prefill chunked, so CPU configs turn it off; with it on, the CPU"
        " engine refuses per-request seeds.",
    )
    enforce_eager: bool = Field(default=False, description="Skip graph capture and compilation (faster start).")
    seed: int = Field(default=0, description="Engine seed.")
    start_timeout_s: float = Field(
        default=3600.0,
        gt=0.0,
        description="Longest the engine may take to start (weights, KV-cache profiling, compilation) before"
        " the start fails; Ray Serve LLM's engine start timeout has the same default.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further vLLM AsyncEngineArgs fields, passed through as they are."
    )

    @property
    def name(self) -> str:
        from pathlib import PurePath

        return self.served_name or PurePath(self.model).name
