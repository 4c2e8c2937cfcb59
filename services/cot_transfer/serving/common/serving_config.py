"""The serving config: one typed YAML file for the local start and the Kubernetes manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, PositiveInt, model_validator

from cot_transfer.domain.sampling import MAX_TEMPERATURE, SamplingParams
from cot_transfer.domain.sequential import DEFAULT_ERROR_RATE, DEFAULT_ROUNDS
from cot_transfer.domain.transfer import DEFAULT_BASELINE_MAX_POTENTIAL, DEFAULT_UNLOCK_MIN_POTENTIAL
from cot_transfer.engine.config import EngineConfig
from cot_transfer.serving.common.serve_options import check_deployment_config, merge_options

# The client library raises gRPC's 4 MiB default to the same value, so a large Transfer.Run fits.
MAX_MESSAGE_BYTES = 64 * 2**20
# Serve's gRPC proxy takes its message-size limits from this variable, read when the proxy starts.
PROXY_MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
# A forced answer is the answer alone: a number, a short expression, a letter.
DEFAULT_FORCE_ANSWER_MAX_TOKENS = 32
# About a day of one GPU's sampling: a bound on what one run can hold a shared service for, not a
# size any ordinary experiment reaches.
DEFAULT_MAX_SAMPLES_PER_RUN = 50_000_000
# Runs in progress share an ingress replica's slots evenly, so each extra run thins every run's share.
DEFAULT_MAX_CONCURRENT_RUNS = 32
# Queues past full replicas: one model replica's worth of calls (its max_ongoing_requests, 64), and
# half an ingress replica's per proxy. Past them Serve sheds with RESOURCE_EXHAUSTED, which clients
# retry after a backoff, instead of queueing without bound.
DEFAULT_MODEL_MAX_QUEUED_REQUESTS = 64
DEFAULT_INGRESS_MAX_QUEUED_REQUESTS = 128
# A run's events waiting for its reader: enough to keep a stream busy between reads, few enough that
# a reader that stops reading holds at most that many CoTs (each up to limits.max_text_chars) in memory.
DEFAULT_MAX_BUFFERED_EVENTS_PER_RUN = 64
# Half an ingress replica's calls (ingress.max_ongoing_requests, 256): a caller that floods the
# service leaves the other half to everyone else.
DEFAULT_MAX_CONCURRENT_CALLS_PER_CALLER = 128
# A generation of 32k tokens at 20 tokens/s on a loaded GPU is 27 minutes; a wedged engine is found
# sooner by its own stall guard (engine stall_timeout_s), this bounds the hop itself.
DEFAULT_REPLICA_CALL_TIMEOUT_S = 1800.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingDefaults(_Strict):
    temperature: float = Field(default=0.6, ge=0.0, le=MAX_TEMPERATURE, description="Sampling temperature.")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(
        default=256, ge=1, description="Generation budget; for the weak model it counts the prefix."
    )
    seed: int | None = Field(default=None, description="Sampling seed; unseeded when unset.")

    def settings(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_tokens, self.seed)


class ThresholdsConfig(_Strict):
    baseline_max_potential: float = Field(
        default=DEFAULT_BASELINE_MAX_POTENTIAL,
        ge=0.0,
        le=1.0,
        description="Unsolved at baseline when the potential at fraction 0 is at most this (tau0).",
    )
    unlock_min_potential: float = Field(
        default=DEFAULT_UNLOCK_MIN_POTENTIAL,
        ge=0.0,
        le=1.0,
        description="Unlocked at a fraction when the potential there is at least this (tau).",
    )


class ResourcesConfig(_Strict):
    num_cpus: float = Field(default=1.0, ge=0.0, description="CPUs per replica (Ray logical resources).")
    num_gpus: float = Field(default=0.0, ge=0.0, description="GPUs per replica; 0 runs the engine on CPU.")
    memory_gib: float | None = Field(default=None, gt=0.0, description="Host memory per replica, if constrained.")

    def ray_actor_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_gib is not None:
            options["memory"] = int(self.memory_gib * 2**30)
        return options


class AutoscalingConfig(_Strict):
    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(default=1, ge=1, description="Most replicas the autoscaler may start.")
    initial_replicas: int | None = Field(default=None, ge=0, description="Replicas at start; min_replicas if unset.")
    target_ongoing_requests: float = Field(
        default=8.0, gt=0.0, description="Ongoing requests per replica the autoscaler steers towards."
    )
    upscale_delay_s: float = Field(default=30.0, ge=0.0, description="Load must stay high this long to scale up.")
    downscale_delay_s: float = Field(default=300.0, ge=0.0, description="Load must stay low this long to scale down.")
    look_back_period_s: float = Field(default=30.0, gt=0.0, description="Window the load is averaged over.")
    policy: Literal["ongoing_requests", "engine_queue"] = Field(
        default="ongoing_requests",
        description="ongoing_requests: Serve's default, requests per replica towards target_ongoing_requests."
        " engine_queue: scale on the vLLM waiting queue (cot_transfer.serving.wiring.autoscaling.EngineQueuePolicy).",
    )
    engine_queue_waiting_per_replica: float = Field(
        default=1.0, ge=0.0, description="engine_queue: scale up while more sequences than this wait per replica."
    )
    engine_queue_running_per_replica: float = Field(
        default=32.0,
        gt=0.0,
        description="engine_queue: scale down when the running sequences fit on fewer replicas at this many each.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self

    def serve_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }
        if self.initial_replicas is not None:
            config["initial_replicas"] = self.initial_replicas
        if self.policy == "engine_queue":
            config["policy"] = {
                "policy_function": "cot_transfer.serving.wiring.autoscaling:EngineQueuePolicy",
                "policy_kwargs": {
                    "waiting_per_replica": self.engine_queue_waiting_per_replica,
                    "running_per_replica": self.engine_queue_running_per_replica,
                },
            }
        return config


ReasoningPreset = Literal["plain", "qwen3", "deepseek_r1", "gpt_oss"]


class CustomReasoningFormat(_Strict):
    """A reasoning format for a model no preset covers (see the README's "Real models")."""

    template: str = Field(
        description="How a received reasoning prefix is placed: a string with {prompt} (the problem through the"
        " model's chat template, generation prompt included) and {reasoning} (the prefix), e.g."
        " '{prompt}<think>\\n{reasoning}'. The strong model's prompt is the template with an empty {reasoning}.",
    )
    reasoning_end: str = Field(
        min_length=1, description="Text that closes the reasoning block in the model's output, e.g. '</think>'."
    )
    reasoning_start: str = Field(
        default="", description="Text the model may write to open its reasoning block; dropped from the CoT."
    )

    @model_validator(mode="after")
    def _template_places_reasoning(self) -> CustomReasoningFormat:
        for field in ("{prompt}", "{reasoning}"):
            if self.template.count(field) != 1:
                raise ValueError(f"template must contain {field} exactly once")
        if self.template.index("{prompt}") > self.template.index("{reasoning}"):
            raise ValueError("template must place {prompt} before {reasoning}")
        return self


class ModelDeploymentConfig(_Strict):
    engine: EngineConfig = Field(
        description="The model and its vLLM engine settings, or the OpenAI-compatible server that runs it (endpoint)."
    )
    reasoning_format: ReasoningPreset | CustomReasoningFormat = Field(
        default="plain",
        description="How the model's output splits into reasoning and final answer, and where a received prefix"
        " goes in its prompt. plain: no reasoning block, the prefix follows the generation prompt. qwen3: <think>"
        " block opened after the generation prompt (enable_thinking on). deepseek_r1: the template opens <think>"
        " itself. gpt_oss: harmony, the analysis channel, then final. Or a CustomReasoningFormat.",
    )
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Resources of one replica.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replica bounds.")
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Requests one replica works on at once; more wait in the handle queue."
    )
    max_queued_requests: int = Field(
        default=DEFAULT_MODEL_MAX_QUEUED_REQUESTS,
        ge=-1,
        description="Requests each caller (an ingress replica) queues for a replica once every replica is full; more"
        " get RESOURCE_EXHAUSTED. -1 queues without bound, where a burst piles up work no deadline sees.",
    )
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults, description="Defaults for unset fields.")
    force_answer_max_tokens: int = Field(
        default=DEFAULT_FORCE_ANSWER_MAX_TOKENS,
        ge=1,
        description="As a receiver in the force_answer mode: the token budget of the answer written right after"
        " the closed prefix (the reasoning budget, sampling.max_tokens, does not apply).",
    )
    deployment_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray Serve's own serve.deployment options for this deployment, passed through as Ray Serve"
        " LLM's deployment_config (e.g. health_check_period_s, graceful_shutdown_timeout_s, ray_actor_options,"
        " autoscaling_config); they override resources, autoscaling and the request limits above.",
    )

    @model_validator(mode="after")
    def _serve_options_known(self) -> ModelDeploymentConfig:
        check_deployment_config(self.deployment_config)
        self.serve_options()
        return self

    @model_validator(mode="after")
    def _preset_has_a_local_tokenizer(self) -> ModelDeploymentConfig:
        # The presets find their markers through vLLM's reasoning parsers, which read a local tokenizer.
        if self.engine.tokenizer_folder is None and self.reasoning_format in ("qwen3", "deepseek_r1", "gpt_oss"):
            raise ValueError(
                f"reasoning_format {self.reasoning_format!r} needs the model's tokenizer as a local folder"
                " (engine.endpoint.tokenizer); with the server's tokenizer use plain or a custom format"
            )
        return self

    def serve_options(self) -> dict[str, Any]:
        """The options the deployment is built with (``serve.deployment``'s names)."""
        declared = {
            "ray_actor_options": self.resources.ray_actor_options(),
            "autoscaling_config": self.autoscaling.serve_config(),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            # A cold vLLM start (weights, KV-cache profiling, compilation) takes minutes on big models.
            "health_check_timeout_s": 60,
            "graceful_shutdown_timeout_s": 30,
        }
        sources = {
            "resources": ("ray_actor_options",),
            "autoscaling": ("autoscaling_config", "num_replicas"),
            "max_ongoing_requests": ("max_ongoing_requests",),
            "max_queued_requests": ("max_queued_requests",),
        }
        return merge_options(declared, self.deployment_config, self.model_fields_set, sources)


class IngressConfig(_Strict):
    # Serve's slots on each ingress replica beyond the work and the Watch streams: health Check and
    # List, refusals and metrics scrapes are answered at once from cached state, so a few suffice.
    HEALTH_CALL_SLOTS: ClassVar[int] = 16

    num_replicas: int = Field(default=1, ge=1, description="Replicas of the gRPC ingress deployment.")
    num_cpus: float = Field(default=0.0, ge=0.0, description="CPUs per ingress replica (it only orchestrates).")
    max_ongoing_requests: int = Field(
        default=256,
        ge=1,
        description="Calls one ingress replica serves at once, health calls not counted; more get"
        " RESOURCE_EXHAUSTED. Serve's own limit for the replica is this plus max_watch_streams plus"
        " HEALTH_CALL_SLOTS, so health probes and Watch streams never take a slot from work.",
    )
    max_watch_streams: int = Field(
        default=64,
        ge=0,
        description="Health Watch streams (which need no token) one ingress replica holds open at once; more get"
        " RESOURCE_EXHAUSTED.",
    )
    watch_max_lifetime_s: float = Field(
        default=300.0,
        gt=0.0,
        description="A health Watch stream ends (OK) after this long; its client opens a new one.",
    )
    health_refresh_interval_s: float = Field(
        default=2.0,
        gt=0.0,
        description="How often the ingress reads whether each model deployment has a running replica. Health"
        " Check, List and Watch answer from that reading; none of them calls Serve itself.",
    )
    max_queued_requests: int = Field(
        default=DEFAULT_INGRESS_MAX_QUEUED_REQUESTS,
        ge=-1,
        description="Calls each gRPC proxy queues for an ingress replica once every one is full; more get"
        " RESOURCE_EXHAUSTED. -1 queues without bound.",
    )
    drain_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        description="On shutdown, how long calls in flight (a Transfer.Run stream included) may take to finish:"
        " the local drain, and Serve's graceful_shutdown_timeout_s of the ingress replicas.",
    )
    replica_call_timeout_s: float = Field(
        default=DEFAULT_REPLICA_CALL_TIMEOUT_S,
        gt=0.0,
        description="The longest the ingress waits for a model replica to answer a call (a completion, a"
        " fingerprint), or on the strong model's stream for its next event; past it the replica call is cancelled"
        " and the caller gets UNAVAILABLE (a run: that problem's transient error), which clients retry. Longer"
        " than the longest generation the models are given, queueing included.",
    )
    max_concurrent_completions: int = Field(
        default=64, ge=1, description="Weak-model calls one ingress replica keeps in flight across experiments."
    )
    max_concurrent_cots: int = Field(
        default=32, ge=1, description="Strong-model CoTs one ingress replica has written at once across experiments."
    )
    backpressure_max_wait_s: float = Field(
        default=600.0,
        gt=0.0,
        description="Transfer.Run: how long a call to a model deployment whose queue is full is retried before"
        " its problem gets a RESOURCE_EXHAUSTED ProblemError (the run goes on with the others).",
    )
    experiment_series_retention_s: float = Field(
        default=600.0,
        ge=0.0,
        description="How long after an experiment ends its per-experiment series (progress, unlock rates) stay"
        " on the service's metrics endpoint; they are dropped after, so the exposition stays bounded.",
    )
    deployment_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray Serve's own serve.deployment options for the ingress, passed through as Ray Serve LLM's"
        " deployment_config; they override num_replicas, num_cpus and the request limits above. The shutdown"
        " timeout is drain_timeout_s, which the local drain uses too.",
    )

    @model_validator(mode="after")
    def _serve_options_known(self) -> IngressConfig:
        check_deployment_config(self.deployment_config, refused={"graceful_shutdown_timeout_s": "drain_timeout_s"})
        self.serve_options()
        return self

    def serve_options(self) -> dict[str, Any]:
        """The options the ingress deployment is built with (``serve.deployment``'s names)."""
        declared = {
            "num_replicas": self.num_replicas,
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "max_ongoing_requests": self.max_ongoing_requests + self.max_watch_streams + self.HEALTH_CALL_SLOTS,
            "max_queued_requests": self.max_queued_requests,
            "graceful_shutdown_timeout_s": self.drain_timeout_s,
        }
        sources = {
            "num_replicas": ("num_replicas", "autoscaling_config"),
            "num_cpus": ("ray_actor_options",),
            "max_ongoing_requests": ("max_ongoing_requests",),
            "max_queued_requests": ("max_queued_requests",),
        }
        merged = merge_options(declared, self.deployment_config, self.model_fields_set, sources)
        if "autoscaling_config" in self.deployment_config:
            merged.pop("num_replicas", None)
        return merged


class LimitsConfig(_Strict):
    max_samples_per_request: int = Field(default=1024, ge=1, description="Cap on n in one request.")
    max_problems_per_run: int = Field(default=10_000, ge=1, description="Cap on problems in one Transfer.Run.")
    max_samples_per_run: int = Field(
        default=DEFAULT_MAX_SAMPLES_PER_RUN,
        ge=1,
        description="Cap on the samples one Transfer.Run may draw: problems x prefixes x receivers x modes x n"
        " (n_max with a sampling plan; an every-step cut counts limits.max_fractions prefixes a problem). A"
        " larger run gets INVALID_ARGUMENT naming problems before any model work; split it over several runs.",
    )
    max_concurrent_runs: int = Field(
        default=DEFAULT_MAX_CONCURRENT_RUNS,
        ge=1,
        description="Transfer.Run calls one ingress replica runs at once; one more gets RESOURCE_EXHAUSTED"
        " (retry with backoff). The runs in progress share the weak and strong slots evenly.",
    )
    max_buffered_events_per_run: int = Field(
        default=DEFAULT_MAX_BUFFERED_EVENTS_PER_RUN,
        ge=1,
        description="Transfer.Run events (CoTs, rows, problem errors) one run holds for a reader slower than the"
        " models; past it the run's problems wait for the reader before sending more (back-pressure).",
    )
    max_concurrent_calls_per_caller: int = Field(
        default=DEFAULT_MAX_CONCURRENT_CALLS_PER_CALLER,
        ge=1,
        description="Work calls (Complete, StreamPrefixes, Transfer.Run) one caller, known by its address, has in"
        " flight on one ingress replica; one more gets RESOURCE_EXHAUSTED (retry with backoff), so one caller"
        " cannot take every slot (ingress.max_ongoing_requests) from the others. Behind a proxy every call has"
        " the proxy's address: list the proxy in trusted_proxies, or raise this to that bound there.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks (CIDR) of proxies, such as deploy/'s TLS gateway, whose x-forwarded-for header names"
        " the caller for max_concurrent_calls_per_caller; from any other peer the header is ignored. Empty: a"
        " caller is always its peer address.",
    )
    max_fractions: int = Field(
        default=512, ge=1, description="Cap on fractions in one request, and on the steps of an every-step cut."
    )
    max_text_chars: int = Field(
        default=1_000_000,
        ge=1,
        description="Longest text field (problem, prefix, answer, CoT) accepted, in characters; longer ones get"
        " INVALID_ARGUMENT naming the field, at the edge, before any tokenisation.",
    )
    max_message_bytes: int = Field(
        default=MAX_MESSAGE_BYTES,
        ge=2**16,
        lt=2**31,
        description="Largest request the gRPC proxy accepts; larger ones get RESOURCE_EXHAUSTED from gRPC itself."
        " Serve's proxy reads it from RAY_SERVE_GRPC_MAX_MESSAGE_SIZE on each node: the local start sets it,"
        " the Kubernetes manifests must match it.",
    )


class AdaptiveConfig(_Strict):
    """Adaptive sampling (a run's SamplingPlan): what a plan gets for the fields it leaves unset."""

    rounds: list[PositiveInt] = Field(
        default_factory=lambda: list(DEFAULT_ROUNDS),
        min_length=1,
        description="Samples per round when a plan names none; the last size repeats up to n_max.",
    )
    error_rate: float = Field(
        default=DEFAULT_ERROR_RATE, gt=0.0, lt=1.0, description="Decision error rate when a plan names none."
    )
    max_n_max: int = Field(default=4096, ge=1, description="Largest n_max a plan may ask for.")
    max_rounds: int = Field(default=64, ge=1, description="Most rounds a plan may take to reach n_max.")


class ServingConfig(_Strict):
    app_name: str = Field(default="cot_transfer", description="Ray Serve application name (gRPC metadata).")
    route_prefix: str = Field(default="/cot_transfer", description="Route prefix of the application.")
    grpc_port: int = Field(default=9000, ge=0, le=65535, description="Port of Ray Serve's gRPC proxy.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Port of Ray Serve's HTTP proxy.")
    metrics_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of Ray's own Prometheus endpoint on each node (local start; KubeRay sets its own)."
        " The service's endpoint is GET {route_prefix}/metrics on the HTTP port.",
    )
    host: str = Field(default="127.0.0.1", description="Address the proxies listen on.")
    default_grader: str = Field(default="exact", description="Grader used when a request names none.")
    auth_token_env: str | None = Field(
        default=None,
        description="Environment variable holding the bearer token every call must carry"
        " ('authorization: Bearer <token>'); no token is required when unset. Health checks are exempt.",
    )
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig, description="Default unlock thresholds.")
    strong: ModelDeploymentConfig = Field(description="The strong model that writes the CoT.")
    weak: ModelDeploymentConfig = Field(description="The weak model that completes prefixes.")
    receivers: list[ModelDeploymentConfig] = Field(
        default_factory=list,
        description="Further models that only complete prefixes (role receiver), each its own deployment. The"
        " strong and the weak model are receivers too: a run names any of them in RunRequest.receivers.",
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="The gRPC ingress deployment.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request size and run limits.")
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig, description="Adaptive sampling: defaults, limits.")

    @classmethod
    def from_yaml(cls, path: str | Path) -> ServingConfig:
        """Loads a config; relative model paths are taken relative to the file's folder."""
        path = Path(path)
        data = yaml.safe_load(path.read_text()) or {}
        config = cls.model_validate(data)
        return config.with_models_relative_to(path.parent)

    @model_validator(mode="after")
    def _receiver_names_unique(self) -> ServingConfig:
        # A run names its receivers by served name: each must mean one model.
        seen = {self.strong.engine.name, self.weak.engine.name}
        for index, receiver in enumerate(self.receivers):
            if receiver.engine.name in seen:
                raise ValueError(f"receivers[{index}]: served name {receiver.engine.name!r} is already in use")
            seen.add(receiver.engine.name)
        return self

    def with_models_relative_to(self, base: Path) -> ServingConfig:
        updated = self.model_copy(deep=True)
        for deployment in (updated.strong, updated.weak, *updated.receivers):
            endpoint = deployment.engine.endpoint
            if endpoint is not None:
                # The model is a name on the server; only a local tokenizer folder is a path.
                if endpoint.local_tokenizer is not None and not Path(endpoint.local_tokenizer).is_absolute():
                    endpoint.tokenizer = str((base / endpoint.local_tokenizer).resolve())
                continue
            model_path = Path(deployment.engine.model)
            if not model_path.is_absolute():
                deployment.engine.model = str((base / model_path).resolve())
        return updated

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
