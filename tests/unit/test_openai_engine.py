"""The OpenAI-compatible engine against an in-process fake of vLLM's OpenAI server (httpx's
MockTransport): requests, SSE streaming, retries, the error table, health, cancellation, the
server-side tokenizer and that the API key never leaks. The real server: tests/integration/."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from pydantic import ValidationError

from cot_transfer.domain import errors
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.openai_engine import OpenAIEngine, backoff_s, server_sent_events, special_ids_of

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-7f3a9c1e"
KEY_ENV = "UPSTREAM_KEY"
MODEL = "upstream-weak"
BASE = "http://upstream.test:8000/v1"


class ClosingStream(httpx.AsyncByteStream):
    """A response body that yields its chunks slowly and records being closed (the client went away)."""

    def __init__(self, chunks: list[bytes], delay_s: float = 0.0) -> None:
        self.chunks = chunks
        self.delay_s = delay_s
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay_s)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def error_body(message: str, **fields: Any) -> dict[str, Any]:
    """An error response body in the OpenAI API's form."""
    return {"error": {"message": message, **fields}}


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [f"data: {json.dumps(event)}\n\n".encode() for event in events] + [b"data: [DONE]\n\n"]


class FakeServer:
    """vLLM's OpenAI server as far as the engine uses it; ``failures`` are answered first, in order."""

    def __init__(self, max_model_len: int = 512, key: str = KEY) -> None:
        self.max_model_len = max_model_len
        self.key = key
        self.requests: list[httpx.Request] = []
        self.failures: list[Callable[[httpx.Request], httpx.Response]] = []
        self.streams: list[ClosingStream] = []
        self.stream_delay_s = 0.0
        self.return_token_ids = True

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests if request.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            return self.failures.pop(0)(request)
        if self.key and request.headers.get("authorization") != f"Bearer {self.key}":
            return httpx.Response(401, json=error_body("Unauthorized", type="Unauthorized"))
        path = request.url.path
        if path == "/health":
            return httpx.Response(200)
        if path == "/v1/models":
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": MODEL, "max_model_len": self.max_model_len}]}
            )
        if path == "/v1/completions":
            return self._completion(json.loads(request.content))
        return httpx.Response(404, json={"detail": "Not Found"})

    def _completion(self, body: dict[str, Any]) -> httpx.Response:
        if body["model"] != MODEL:
            return httpx.Response(404, json=error_body(f"The model `{body['model']}` does not exist.", code=404))
        prompt = body["prompt"]
        # Sample i continues the prompt with its last id + 1 + i, twice, then stops.
        samples = [[prompt[-1] + 1 + index] * 2 for index in range(body["n"])]
        if not body.get("stream"):
            choices = [
                {
                    "index": index,
                    "text": "".join(chr(96 + token % 26) for token in ids),
                    "finish_reason": "stop",
                    **({"token_ids": ids} if self.return_token_ids else {}),
                }
                for index, ids in enumerate(samples)
            ]
            return httpx.Response(200, json={"id": "cmpl-1", "object": "text_completion", "choices": choices})
        events: list[dict[str, Any]] = [
            {"choices": [{"index": 0, "text": chr(96 + token % 26), "token_ids": [token], "finish_reason": None}]}
            for token in samples[0]
        ]
        events.append({"choices": [{"index": 0, "text": "", "token_ids": [], "finish_reason": "length"}]})
        events.append({"choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": 2}})
        stream = ClosingStream(sse(*events), self.stream_delay_s)
        self.streams.append(stream)
        return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})


def engine_config(**endpoint: Any) -> EngineConfig:
    return EngineConfig.model_validate(
        {"model": MODEL, "endpoint": {"base_url": BASE, "api_key_env": KEY_ENV, **endpoint}}
    )


class _LocalTokenizer:
    """Stands in for a local tokenizer folder: one id per character."""

    def encode(self, text: str) -> list[int]:
        return [ord(char) for char in text]

    def decode(self, token_ids: Any) -> str:
        return "".join(map(chr, token_ids))

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        return problem

    def is_special(self, token_id: int) -> bool:
        return False


async def started(server: FakeServer, sleeps: list[float] | None = None, **endpoint: Any) -> OpenAIEngine:
    async def sleep(delay: float) -> None:
        (sleeps if sleeps is not None else []).append(delay)

    engine = OpenAIEngine(
        engine_config(**{"tokenizer": "/unused", **endpoint}),
        transport=httpx.MockTransport(server),
        sleep=sleep,
        environ={KEY_ENV: KEY},
        load_tokenizer=lambda folder: _LocalTokenizer(),
    )
    await engine.start()
    return engine


def request(n: int = 2, stream: bool = False, **sampling: Any) -> GenerationRequest:
    params = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8, "seed": 7, **sampling}
    return GenerationRequest([5, 6, 7], n=n, sampling=SamplingParams(**params), stream_deltas=stream, stop=("\n\n",))


async def outputs(engine: OpenAIEngine, generation: GenerationRequest) -> list[GenerationOutput]:
    return [output async for output in engine.generate(generation, "req-1")]


# -- config ---------------------------------------------------------------------------------


def test_an_endpoint_takes_no_vllm_engine_settings() -> None:
    with pytest.raises(ValidationError, match="dtype, enforce_eager: vLLM engine settings do not apply"):
        EngineConfig.model_validate(
            {"model": MODEL, "dtype": "float32", "enforce_eager": True, "endpoint": {"base_url": BASE}}
        )
    with pytest.raises(ValidationError, match=r"endpoint\.base_url"):
        EngineConfig.model_validate({"model": MODEL, "endpoint": {"base_url": "ftp://x"}})
    with pytest.raises(ValidationError, match=r"endpoint\.timeout_s"):
        EngineConfig.model_validate({"model": MODEL, "endpoint": {"base_url": BASE, "timeout_s": 3}})
    config = engine_config()
    assert config.name == MODEL and config.tokenizer_folder is None
    assert config.endpoint is not None and config.endpoint.server_root == "http://upstream.test:8000"


def test_the_key_variable_must_be_a_name() -> None:
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        engine_config(api_key_env=KEY)


# -- requests and streaming -------------------------------------------------------------------


async def test_a_completion_sends_token_ids_and_every_sampling_setting() -> None:
    server = FakeServer(max_model_len=384)
    engine = await started(server)
    assert engine.max_model_len == 384
    assert len(engine.fingerprint()) == 16
    server.max_model_len = 512  # the server now serves something else under the name
    assert (await started(server)).fingerprint() != engine.fingerprint()
    [output] = await outputs(engine, request(n=3))
    [body] = server.bodies("/v1/completions")
    assert body == {
        "model": MODEL,
        "prompt": [5, 6, 7],
        "n": 3,
        "max_tokens": 8,
        "temperature": 0.6,
        "top_p": 0.95,
        "seed": 7,
        "stop": ["\n\n"],
        "return_token_ids": True,
    }
    assert output.finished and [list(sample.token_ids) for sample in output.samples] == [[8, 8], [9, 9], [10, 10]]
    assert [sample.finish_reason for sample in output.samples] == ["stop"] * 3
    completion = next(r for r in server.requests if r.url.path == "/v1/completions")
    assert completion.headers["authorization"] == f"Bearer {KEY}" and completion.headers["x-request-id"] == "req-1"
    assert engine.stats()["requests_unfinished"] == 0


async def test_a_config_context_length_wins_and_the_prefix_path_follows_the_base_url() -> None:
    server = FakeServer()
    engine = await started(server)
    assert engine.max_model_len == 512
    config = EngineConfig.model_validate(
        {"model": MODEL, "max_model_len": 128, "endpoint": {"base_url": BASE, "tokenizer": "/unused"}}
    )
    assert config.max_model_len == 128


async def test_a_stream_yields_deltas_until_the_finish_reason() -> None:
    server = FakeServer()
    engine = await started(server)
    streamed = await outputs(engine, request(n=1, stream=True))
    assert server.bodies("/v1/completions")[0]["stream"] is True
    assert [[list(s.token_ids) for s in output.samples] for output in streamed] == [[[8]], [[8]], [[]]]
    assert [output.finished for output in streamed] == [False, False, True]
    assert "".join(output.samples[0].text for output in streamed) == "hh"


async def test_server_sent_events_are_parsed_as_the_spec_says() -> None:
    async def lines(*items: str) -> AsyncIterator[str]:
        for item in items:
            yield item

    events = [
        event async for event in server_sent_events(lines(": ping", "event: x", "data: a", "data:b", "", "data: c"))
    ]
    assert events == ["a\nb", "c"]


async def test_a_server_without_token_ids_has_its_text_retokenised() -> None:
    server = FakeServer()
    server.return_token_ids = False
    engine = await started(server)
    [output] = await outputs(engine, request(n=1))
    assert list(output.samples[0].token_ids) == [ord("h"), ord("h")]


# -- errors -----------------------------------------------------------------------------------


def answer(
    status: int, body: dict[str, Any] | None = None, **headers: str
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body or {}, headers=headers)


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@pytest.mark.parametrize(
    ("status", "body", "error_type", "text"),
    [
        (401, error_body("Unauthorized"), errors.UnauthenticatedError, "refused the key in $UPSTREAM_KEY"),
        (403, error_body("forbidden"), errors.PermissionDeniedError, "denied access to model 'upstream-weak'"),
        (404, error_body("The model does not exist."), errors.NotFoundError, "'upstream-weak' (engine.model)"),
        (400, error_body("bad top_k", param="top_k"), errors.InvalidArgumentError, "top_k: the server at"),
        (422, {"detail": [{"msg": "field required"}]}, errors.InvalidArgumentError, "request: the server at"),
    ],
)
async def test_client_errors_map_into_the_status_table_without_retries(
    status: int, body: dict[str, Any], error_type: type[errors.CotTransferError], text: str
) -> None:
    server = FakeServer()
    engine = await started(server)
    server.failures = [answer(status, body)] * 5
    with pytest.raises(error_type, match=f"HTTP {status}") as raised:
        await outputs(engine, request())
    assert text in raised.value.message and BASE in raised.value.message
    assert len(server.bodies("/v1/completions")) == 1


@pytest.mark.parametrize(
    ("failure", "error_type", "text"),
    [
        (answer(429, error_body("slow down")), errors.OverloadedError, "at capacity (HTTP 429): slow down"),
        (answer(503, error_body("engine dead")), errors.UnavailableError, "failed (HTTP 503): engine dead"),
        (refuse_connection, errors.UnavailableError, "unreachable (ConnectError: [Errno 111] Connection refused)"),
    ],
)
async def test_transient_errors_are_retried_with_bounded_backoff(
    failure: Callable[[httpx.Request], httpx.Response], error_type: type[errors.CotTransferError], text: str
) -> None:
    server = FakeServer()
    sleeps: list[float] = []
    engine = await started(server, sleeps, max_retries=3, retry_initial_backoff_s=0.5, retry_max_backoff_s=1.5)
    server.failures = [failure] * 10
    with pytest.raises(error_type) as raised:
        await outputs(engine, request())
    assert text in raised.value.message
    assert len([r for r in server.requests if r.url.path == "/v1/completions"]) == 4  # 1 + max_retries
    assert len(sleeps) == 3 and all(0 <= delay <= bound for delay, bound in zip(sleeps, (0.5, 1.0, 1.5), strict=True))
    # Once the server recovers, the next call goes through.
    sleeps.clear()
    server.failures = [failure, failure]
    [output] = await outputs(engine, request(n=1))
    assert output.finished and len(sleeps) == 2


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    server = FakeServer()
    sleeps: list[float] = []
    engine = await started(server, sleeps, retry_max_backoff_s=4.0)
    server.failures = [answer(429, {}, **{"retry-after": "3"}), answer(429, {}, **{"retry-after": "60"})]
    await outputs(engine, request(n=1))
    assert sleeps == [3.0, 4.0]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    assert [backoff_s(attempt, 0.5, 8.0, lambda: 1.0) for attempt in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_s(3, 0.5, 8.0, lambda: 0.25) == 1.0


async def test_a_start_waits_for_a_server_still_loading_up_to_the_start_timeout() -> None:
    server = FakeServer()
    sleeps: list[float] = []
    server.failures = [refuse_connection] * 3
    engine = await started(server, sleeps, max_retries=0, retry_max_backoff_s=2.0)
    assert engine.max_model_len == 512 and sleeps == [2.0, 2.0, 2.0]
    down = FakeServer()
    down.failures = [refuse_connection] * 100
    never = OpenAIEngine(
        EngineConfig.model_validate(
            {
                "model": MODEL,
                "start_timeout_s": 5,
                "endpoint": {"base_url": BASE, "max_retries": 0, "retry_max_backoff_s": 2.0, "tokenizer": "/unused"},
            }
        ),
        transport=httpx.MockTransport(down),
        sleep=lambda delay: asyncio.sleep(0),
    )
    with pytest.raises(errors.UnavailableError, match=r"unreachable .*; gave up after engine\.start_timeout_s \(5 s\)"):
        await never.start()
    assert len(down.requests) == 4  # at 0, 2, 4 and 5 s


async def test_a_model_the_server_does_not_have_fails_the_start_naming_what_it_serves() -> None:
    server = FakeServer()
    engine = OpenAIEngine(
        EngineConfig.model_validate(
            {"model": "gpt-9", "endpoint": {"base_url": BASE, "api_key_env": KEY_ENV, "tokenizer": "/unused"}}
        ),
        transport=httpx.MockTransport(server),
        environ={KEY_ENV: KEY},
    )
    with pytest.raises(
        errors.NotFoundError, match=r"model 'gpt-9' \(engine.model\) is not served at .*; it serves \['upstream-weak'\]"
    ):
        await engine.start()


async def test_an_unset_key_variable_is_named_and_a_wrong_key_is_refused() -> None:
    server = FakeServer()
    engine = OpenAIEngine(engine_config(), transport=httpx.MockTransport(server), environ={})
    with pytest.raises(errors.UnauthenticatedError, match=r"environment variable UPSTREAM_KEY .* is not set"):
        await engine.start()
    wrong = OpenAIEngine(engine_config(), transport=httpx.MockTransport(server), environ={KEY_ENV: "sk-wrong"})
    with pytest.raises(errors.UnauthenticatedError, match=r"refused the key in \$UPSTREAM_KEY \(HTTP 401\)") as raised:
        await wrong.start()
    assert "sk-wrong" not in raised.value.message


async def test_the_key_appears_in_no_error_and_no_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeServer()
    engine = await started(server, max_retries=1)
    echo = error_body(f"bad header Authorization: Bearer {KEY}", param="headers")
    server.failures = [answer(503, echo), answer(400, echo)]
    with pytest.raises(errors.InvalidArgumentError) as raised:
        await outputs(engine, request())
    assert KEY not in raised.value.message and "<redacted>" in raised.value.message
    assert KEY not in caplog.text and "<redacted>" in caplog.text
    assert KEY not in repr(engine_config()) and KEY not in engine_config().model_dump_json()


# -- health, cancellation -------------------------------------------------------------------


async def test_health_follows_the_server() -> None:
    server = FakeServer()
    engine = await started(server)
    await engine.check_health()
    server.failures = [answer(503)]
    with pytest.raises(errors.UnavailableError, match="not healthy \\(HTTP 503\\)"):
        await engine.check_health()
    server.failures = [refuse_connection]
    with pytest.raises(errors.UnavailableError, match="unreachable"):
        await engine.check_health()
    server.failures = [answer(404)]  # no /health: the model list answers instead
    await engine.check_health()
    assert [r.url.path for r in server.requests[-2:]] == ["/health", "/v1/models"]


async def test_closing_a_stream_closes_the_upstream_request() -> None:
    server = FakeServer()
    server.stream_delay_s = 0.05
    engine = await started(server)
    generation = cast(AsyncGenerator[GenerationOutput, None], engine.generate(request(n=1, stream=True), "req-9"))
    first = await generation.__anext__()
    assert not first.finished and engine.stats()["requests_unfinished"] == 1
    await generation.aclose()
    assert server.streams[0].closed and engine.stats()["requests_unfinished"] == 0


async def test_abort_closes_the_request_in_flight() -> None:
    server = FakeServer()
    server.stream_delay_s = 0.05
    engine = await started(server)
    received: list[GenerationOutput] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for output in engine.generate(request(n=1, stream=True), "req-3"):
            received.append(output)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    await engine.abort("req-3")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.streams[0].closed and not received[-1].finished


# -- the server's tokenizer --------------------------------------------------------------------


class TokenizerServer:
    """/tokenize, /detokenize and /tokenizer_info of a one-id-per-character vocabulary plus <eos> = 1."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if request.url.path == "/tokenizer_info":
            return httpx.Response(
                200,
                json={
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    "eos_token": "<eos>",
                    "bos_token": None,
                    "added_tokens_decoder": {"1": "<eos>", "2": "<think>"},
                    "additional_special_tokens": ["<eos>", "ab"],
                },
            )
        body = json.loads(request.content)
        if request.url.path == "/tokenize":
            if "messages" in body:
                text = f"U:{body['messages'][0]['content']}|A:{json.dumps(body.get('chat_template_kwargs'))}"
            else:
                text = body["prompt"]
            tokens = [1] if text == "<eos>" else [ord(char) for char in text]
            return httpx.Response(200, json={"tokens": tokens, "count": len(tokens), "max_model_len": 512})
        if request.url.path == "/detokenize":
            return httpx.Response(200, json={"prompt": "".join("<eos>" if t == 1 else chr(t) for t in body["tokens"])})
        return httpx.Response(404)


async def test_the_server_tokenizer_uses_tokenize_and_detokenize_with_a_cache() -> None:
    server, tokenizer_server = FakeServer(), TokenizerServer()
    engine = OpenAIEngine(
        engine_config(tokenizer="server"),
        transport=httpx.MockTransport(server),
        tokenizer_transport=httpx.MockTransport(tokenizer_server),
        environ={KEY_ENV: KEY},
    )
    await engine.start()
    tokenizer = engine.tokenizer
    assert tokenizer.is_special(1) and not tokenizer.is_special(2)  # "ab" is two tokens: not one special
    assert tokenizer.encode("ab") == [97, 98]
    assert tokenizer.decode([97, 1, 98]) == "ab"  # special ids dropped, as the local tokenizer does
    calls = len(tokenizer_server.calls)
    assert tokenizer.encode("ab") == [97, 98] and tokenizer.decode([97, 98]) == "ab"
    assert len(tokenizer_server.calls) == calls  # cached
    assert tokenizer.render_problem("3+4", {"enable_thinking": True}) == 'U:3+4|A:{"enable_thinking": true}'


def test_special_ids_are_the_named_and_additional_special_tokens() -> None:
    vocabulary = {"<s>": [9], "</s>": [8], "<tool>": [7], "<pad>": [6]}
    info = {
        "bos_token": {"content": "<s>"},
        "eos_token": "</s>",
        "pad_token": None,
        "added_tokens_decoder": {"6": "<pad>"},  # vLLM's shape: no special flag, so not taken
        "additional_special_tokens": ["<tool>", "not one token"],
    }
    assert special_ids_of(info, lambda text: vocabulary.get(text, [1, 2])) == {7, 8, 9}


async def test_a_server_without_tokenizer_info_asks_for_a_local_folder() -> None:
    server = FakeServer()

    def no_info(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    engine = OpenAIEngine(
        engine_config(tokenizer="server"),
        transport=httpx.MockTransport(server),
        tokenizer_transport=httpx.MockTransport(no_info),
        environ={KEY_ENV: KEY},
    )
    with pytest.raises(
        errors.InvalidArgumentError, match=r"engine\.endpoint\.tokenizer: 'server' needs .*--enable-tokenizer-info"
    ):
        await engine.start()


# -- the serving config ---------------------------------------------------------------------


def test_a_serving_config_takes_an_endpoint_as_any_model(tmp_path: Path) -> None:
    from cot_transfer.serving.common.serving_config import ServingConfig
    from cot_transfer.serving.wiring.deployments import engine_for

    source = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    endpoint = {"base_url": BASE, "api_key_env": KEY_ENV, "tokenizer": "../models/testbed/weak"}
    source["receivers"] = [{"reasoning_format": "qwen3", "engine": {"model": MODEL, "endpoint": endpoint}}]
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "serving.yaml"
    path.write_text(yaml.safe_dump(source))
    config = ServingConfig.from_yaml(path)
    receiver = config.receivers[0].engine
    assert receiver.model == MODEL and receiver.name == MODEL  # a name on the server, not a path
    assert receiver.tokenizer_folder == str((tmp_path / "models" / "testbed" / "weak").resolve())
    assert isinstance(engine_for(receiver), OpenAIEngine)
    source["receivers"][0]["engine"]["endpoint"]["tokenizer"] = "server"
    with pytest.raises(ValidationError, match="reasoning_format 'qwen3' needs the model's tokenizer as a local"):
        ServingConfig.model_validate(source)
    source["receivers"][0]["reasoning_format"] = "plain"
    assert ServingConfig.model_validate(source).receivers[0].engine.tokenizer_folder is None


def test_render_reads_an_endpoint_models_tokenizer_folder(tmp_path: Path) -> None:
    from cot_transfer.cli.render import render_prompt
    from cot_transfer.cli.run import UsageError

    source = yaml.safe_load((REPO / "configs" / "local-cpu.yaml").read_text())
    built_in = tmp_path / "built-in.yaml"
    built_in.write_text(
        yaml.safe_dump(
            {**source, "weak": {**source["weak"], "engine": {"model": str(REPO / "models" / "testbed" / "weak")}}}
        )
    )
    endpoint = {"base_url": BASE, "tokenizer": str(REPO / "models" / "testbed" / "weak")}
    remote = tmp_path / "endpoint.yaml"
    remote.write_text(
        yaml.safe_dump({**source, "weak": {**source["weak"], "engine": {"model": MODEL, "endpoint": endpoint}}})
    )
    assert render_prompt(remote, "weak", "3+4", "3") == render_prompt(built_in, "weak", "3+4", "3")
    server = {**source["weak"], "reasoning_format": "plain", "engine": {"model": MODEL, "endpoint": {"base_url": BASE}}}
    remote.write_text(yaml.safe_dump({**source, "weak": server}))
    with pytest.raises(UsageError, match=r"weak\.engine\.endpoint\.tokenizer is 'server'"):
        render_prompt(remote, "weak", "3+4", "3")


def test_a_cluster_config_takes_an_endpoint_model_with_an_absolute_tokenizer_folder() -> None:
    from cot_transfer.serving.common.serving_config import ServingConfig
    from tools.kuberay import check_cluster_config

    source = yaml.safe_load((REPO / "configs" / "k8s-cpu.yaml").read_text())
    endpoint = {"base_url": BASE, "tokenizer": "/models/weak"}
    receiver = {"engine": {"model": MODEL, "endpoint": endpoint}}
    check_cluster_config(ServingConfig.model_validate({**source, "receivers": [receiver]}))
    endpoint["tokenizer"] = "models/weak"
    with pytest.raises(
        ValueError, match=r"receivers\[0\]\.engine\.endpoint\.tokenizer 'models/weak' must be an absolute"
    ):
        check_cluster_config(ServingConfig.model_validate({**source, "receivers": [receiver]}))
