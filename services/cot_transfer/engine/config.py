"""Engine settings (part of the serving config file)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The tokenizer of an endpoint's model comes from the server itself (vLLM's /tokenize, /detokenize).
SERVER_TOKENIZER = "server"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class OpenAIEndpointConfig(BaseModel):
    """An OpenAI-compatible server (``vllm serve``, SGLang, TGI, llama.cpp's server, ...) that runs
    the model instead of a vLLM engine inside the replica. It needs the raw completions API
    (``POST /v1/completions``) with token-id prompts: a chat-only API cannot continue a prefix."""

    # A key pasted into api_key_env by mistake must not be echoed by a validation error.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(
        description="The server's OpenAI base URL, e.g. http://10.0.0.5:8000/v1 (/tokenize, /detokenize and"
        " /health are read at the same address without the trailing /v1)."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds the API key (sent as 'Authorization: Bearer');"
        " the key itself never goes in a config, a log or an error. No key is sent when unset.",
    )
    tokenizer: str = Field(
        default=SERVER_TOKENIZER,
        description="A local Hugging Face folder with the model's tokenizer (and chat template), or 'server' for"
        " the server's own /tokenize, /detokenize and /tokenizer_info (vLLM: --enable-tokenizer-info-endpoint)."
        " The reasoning presets (qwen3, deepseek_r1, gpt_oss) need a local folder; 'server' takes plain or a"
        " custom format.",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0.0, description="Longest wait for a connection.")
    read_timeout_s: float = Field(
        default=600.0,
        gt=0.0,
        description="Longest wait for the next bytes of a response; an unstreamed completion sends nothing until"
        " all its samples are done, so this bounds a whole generation.",
    )
    max_retries: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Retries of a request that met a transient failure (no connection, HTTP 429 or 5xx), with"
        " exponential backoff and full jitter; a stream is retried only before its first token.",
    )
    retry_initial_backoff_s: float = Field(default=0.5, gt=0.0, description="Upper bound of the first backoff.")
    retry_max_backoff_s: float = Field(default=8.0, gt=0.0, description="Cap of any one backoff.")
    max_connections: int = Field(default=64, ge=1, description="Connections kept open to the server at once.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not a key")
        return value

    @property
    def server_root(self) -> str:
        """The address of the server's non-OpenAI routes (/health, /tokenize, /detokenize)."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    @property
    def local_tokenizer(self) -> str | None:
        return None if self.tokenizer == SERVER_TOKENIZER else self.tokenizer


# EngineConfig fields that configure a vLLM engine in the replica: refused next to an endpoint.
VLLM_ONLY_FIELDS = frozenset(
    {
        "dtype",
        "gpu_memory_utilization",
        "cpu_kv_cache_space_gib",
        "enable_prefix_caching",
        "max_num_seqs",
        "enable_chunked_prefill",
        "enforce_eager",
        "seed",
        "engine_kwargs",
    }
)


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="Local path of a Hugging Face model folder (config.json, weights, tokenizer); with an endpoint,"
        " the model's name on that server."
    )
    endpoint: OpenAIEndpointConfig | None = Field(
        default=None,
        description="An OpenAI-compatible server that runs the model; unset: a vLLM engine in the replica.",
    )
    served_name: str = Field(default="", description="Name reported in results and metrics; the folder name if empty.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weight and activation dtype."
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context length (prompt + generation); the model's own if unset (an endpoint's: the"
        " max_model_len its /v1/models reports, as vLLM's does).",
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
        " the start fails; Ray Serve LLM's engine start timeout has the same default. With an endpoint: how long"
        " a start waits for an unreachable or failing server to answer.",
    )
    stall_timeout_s: float | None = Field(
        default=300.0,
        gt=0.0,
        description="Longest the engine may be busy with no progress at all (no engine step, no output of any"
        " request) before its requests fail with UNAVAILABLE and its health check fails, so Serve replaces the"
        " replica: a wedged engine raises nothing and would hold every request for ever. None turns it off.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further vLLM AsyncEngineArgs fields, passed through as they are."
    )

    @model_validator(mode="after")
    def _endpoint_takes_no_vllm_settings(self) -> EngineConfig:
        if self.endpoint is not None:
            misplaced = sorted(VLLM_ONLY_FIELDS & self.model_fields_set)
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)}: vLLM engine settings do not apply to a model behind an endpoint"
                    " (set them on that server)"
                )
        return self

    @property
    def tokenizer_folder(self) -> str | None:
        """The local folder of this model's tokenizer, if there is one."""
        return self.model if self.endpoint is None else self.endpoint.local_tokenizer

    @property
    def name(self) -> str:
        from pathlib import PurePath

        if self.endpoint is not None:
            return self.served_name or self.model
        return self.served_name or PurePath(self.model).name
