"""The engine on an OpenAI-compatible server (``vllm serve``, SGLang, TGI, llama.cpp's server).

Prompts go out as token ids on the raw completions API (``POST /v1/completions`` with a list of
ints as ``prompt``), so a received prefix lands inside the model's reasoning block exactly as with
the in-replica vLLM engine; a chat-only API cannot continue a prefix. Generated token ids come back
with vLLM's ``return_token_ids``; a server without it has its text re-tokenised here.

The API key is read from the environment variable the config names and only ever travels in the
``Authorization`` header: no log line, error or result carries it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from cot_transfer.domain.errors import (
    CotTransferError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from cot_transfer.engine.base import (
    Engine,
    GenerationOutput,
    GenerationRequest,
    LoadedModel,
    PromptTokenizer,
    SampleOutput,
    started,
)
from cot_transfer.engine.config import EngineConfig, OpenAIEndpointConfig

logger = logging.getLogger(__name__)

# Longest server error text quoted in an error message.
_MAX_QUOTED_CHARS = 300
_TOKENIZER_CACHE_ENTRIES = 4096
_NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class _TransientError(Exception):
    """A failure worth retrying; ``error`` is what the caller sees once the retries are spent."""

    def __init__(self, error: CotTransferError, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s


def served_fingerprint(base_url: str, served: Mapping[str, Any], max_model_len: int) -> str:
    """16 hex digits over what the server says it serves under the name: its address, the model's id
    and ``root`` (vLLM: the folder or hub id it loaded) and the context length. A checkpoint swapped
    under the same name and path goes unnoticed, as the weights of a local folder mostly do."""
    identity = [base_url, str(served.get("id")), str(served.get("root")), str(max_model_len)]
    return hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]


def backoff_s(attempt: int, initial_s: float, max_s: float, draw: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max_s, initial_s * 2**attempt))."""
    return draw() * min(max_s, initial_s * 2**attempt)


def _error_text(response: httpx.Response, secret: str) -> tuple[str, str | None]:
    """The server's error message and the request field it names (OpenAI's ``error.param``)."""
    message, param = "", None
    try:
        body = response.json()
    except ValueError:
        message = response.text
    else:
        error = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or "")
            param = error.get("param") if isinstance(error.get("param"), str) else None
        elif isinstance(error, str):
            message = error
    message = " ".join(message.split())[:_MAX_QUOTED_CHARS] or f"HTTP {response.status_code}"
    return redact(message, secret), param


def redact(text: str, secret: str) -> str:
    """``text`` without the API key, should a server echo it."""
    return text.replace(secret, "<redacted>") if secret else text


def error_for_response(
    response: httpx.Response, config: EngineConfig, secret: str
) -> CotTransferError | _TransientError:
    """The domain error (or a transient failure to retry) for a non-2xx response of the server."""
    assert config.endpoint is not None
    where = config.endpoint.base_url
    status = response.status_code
    message, param = _error_text(response, secret)
    if status == 401:
        key = f"the key in ${config.endpoint.api_key_env}" if config.endpoint.api_key_env else "no API key"
        return UnauthenticatedError(f"the server at {where} refused {key} (HTTP 401): {message}")
    if status == 403:
        return PermissionDeniedError(
            f"the server at {where} denied access to model {config.model!r} (HTTP 403): {message}"
        )
    if status == 404:
        return NotFoundError(f"model {config.model!r} (engine.model) is not served at {where} (HTTP 404: {message})")
    if status == 429:
        retry_after = _retry_after_s(response)
        return _TransientError(
            OverloadedError(f"the server at {where} is at capacity (HTTP 429): {message}"), retry_after
        )
    if status >= 500:
        return _TransientError(UnavailableError(f"the server at {where} failed (HTTP {status}): {message}"))
    return InvalidArgumentError(param or "request", f"the server at {where} refused it (HTTP {status}): {message}")


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _unreachable(error: httpx.TransportError, where: str) -> UnavailableError:
    # The exception's class says what went wrong (ConnectError, ReadTimeout, ...); its text may
    # be empty or name the host only.
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return UnavailableError(f"the server at {where} is unreachable ({detail})")


@dataclass
class _InFlight:
    n: int
    response: httpx.Response | None = None


class OpenAIEngine(LoadedModel, Engine):
    """An ``Engine`` whose model runs on an OpenAI-compatible server (``EngineConfig.endpoint``)."""

    def __init__(
        self,
        config: EngineConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        tokenizer_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        environ: Mapping[str, str] = os.environ,
        load_tokenizer: Callable[[str], PromptTokenizer] | None = None,
    ) -> None:
        if config.endpoint is None:
            raise ValueError("OpenAIEngine needs an engine config with an endpoint")
        self._config = config
        self._endpoint: OpenAIEndpointConfig = config.endpoint
        self._transport = transport
        self._tokenizer_transport = tokenizer_transport
        self._sleep = sleep
        self._environ = environ
        self._load_tokenizer = load_tokenizer or _local_tokenizer
        self._client: httpx.AsyncClient | None = None
        self._in_flight: dict[str, _InFlight] = {}
        # The key, read once at start; only ever put in the Authorization header.
        self._secret = ""
        self._returns_token_ids = True
        self._fingerprint = ""

    # -- start, health, shutdown ------------------------------------------------------------

    def _read_key(self) -> str:
        name = self._endpoint.api_key_env
        if name is None:
            return ""
        key = self._environ.get(name, "")
        if not key:
            raise UnauthenticatedError(
                f"engine.endpoint.api_key_env: the environment variable {name} that should hold the API key for"
                f" {self._endpoint.base_url} is not set in the replica"
            )
        return key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"} if self._secret else {}

    async def start(self) -> None:
        self._secret = self._read_key()
        endpoint = self._endpoint
        self._client = httpx.AsyncClient(
            base_url=endpoint.server_root,
            headers=self._headers(),
            timeout=httpx.Timeout(endpoint.read_timeout_s, connect=endpoint.connect_timeout_s),
            limits=httpx.Limits(max_connections=endpoint.max_connections),
            transport=self._transport,
        )
        served = await self._wait_for_server()
        self._max_model_len = self._context_length(served)
        self._fingerprint = served_fingerprint(endpoint.base_url, served, self._max_model_len)
        folder = endpoint.local_tokenizer
        if folder is not None:
            self._tokenizer = await asyncio.to_thread(self._load_tokenizer, folder)
        else:
            tokenizer = ServerTokenizer(endpoint, self._config.model, self._headers(), self._tokenizer_transport)
            await asyncio.to_thread(tokenizer.load_special_ids)
            self._tokenizer = tokenizer
        logger.info(
            "engine for %s on %s started (max_model_len=%d, tokenizer %s)",
            self._config.name,
            endpoint.base_url,
            self._max_model_len,
            folder or "from the server",
        )

    async def _wait_for_server(self) -> dict[str, Any]:
        """The model's entry, once the server answers: a server still loading its model (or restarting)
        is waited for up to ``engine.start_timeout_s``; a refused key or an unknown model fail at once."""
        timeout_s = self._config.start_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        waited = 0.0
        while True:
            try:
                return await self._served_model()
            except (UnavailableError, OverloadedError) as error:
                # The clock or the sleeps, whichever says the time is up first.
                left = min(deadline - asyncio.get_running_loop().time(), timeout_s - waited)
                if left <= 0:
                    raise UnavailableError(
                        f"{error.message}; gave up after engine.start_timeout_s ({timeout_s:g} s)"
                    ) from None
                logger.warning("waiting for the server to start: %s", error.message)
                delay = min(left, self._endpoint.retry_max_backoff_s)
                waited += delay
                await self._sleep(delay)

    async def _served_model(self) -> dict[str, Any]:
        """The server's ``/v1/models`` entry of this model; NotFoundError naming the served ones."""
        response = await self._request("GET", "/v1/models" if self._api_prefix else "/models")
        try:
            models = [entry for entry in response.json().get("data", []) if isinstance(entry, dict)]
        except (ValueError, AttributeError):
            raise UnavailableError(
                f"the server at {self._endpoint.base_url} answered /models with no model list"
            ) from None
        for entry in models:
            if entry.get("id") == self._config.model:
                return entry
        served = sorted(str(entry.get("id")) for entry in models)
        raise NotFoundError(
            f"model {self._config.model!r} (engine.model) is not served at {self._endpoint.base_url};"
            f" it serves {served}"
        )

    @property
    def _api_prefix(self) -> str:
        return "/v1" if self._endpoint.base_url.endswith("/v1") else ""

    def _context_length(self, served: Mapping[str, Any]) -> int:
        if self._config.max_model_len is not None:
            return self._config.max_model_len
        reported = served.get("max_model_len")
        if isinstance(reported, int) and reported > 0:
            return reported
        raise InvalidArgumentError(
            "engine.max_model_len",
            f"the server at {self._endpoint.base_url} does not report model {self._config.model!r}'s context length;"
            " set it in the config",
        )

    async def check_health(self) -> None:
        """The server's ``/health`` (vLLM, SGLang, TGI), else its model list; one try, no retries."""
        client = self.client
        try:
            # A probe is answered at once or not at all: the generation read timeout does not apply.
            timeout = self._endpoint.connect_timeout_s
            response = await client.get("/health", timeout=timeout)
            if response.status_code == 404:
                response = await client.get(f"{self._api_prefix}/models", timeout=timeout)
        except httpx.TransportError as error:
            raise _unreachable(error, self._endpoint.base_url) from None
        if response.status_code != 200:
            raise UnavailableError(
                f"the server at {self._endpoint.base_url} is not healthy (HTTP {response.status_code})"
            )

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if isinstance(self._tokenizer, ServerTokenizer):
            self._tokenizer.close()

    @property
    def client(self) -> httpx.AsyncClient:
        return started(self._client)

    def fingerprint(self) -> str:
        return self._fingerprint

    def stats(self) -> dict[str, float]:
        return {
            "requests_unfinished": float(len(self._in_flight)),
            "running": float(sum(flight.n for flight in self._in_flight.values())),
            "waiting": 0.0,
        }

    # -- requests -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One unstreamed request, retried on transient failures; its 2xx response or a domain error."""
        async with self._open(method, path, body, request_id=None) as response:
            await response.aread()
            return response

    @asynccontextmanager
    async def _open(
        self, method: str, path: str, body: dict[str, Any] | None, request_id: str | None
    ) -> AsyncIterator[httpx.Response]:
        """Sends a request and yields its 2xx response with the body unread (a stream stays open).

        Connection failures, 429 and 5xx are retried with backoff up to ``max_retries``; once the
        response is yielded nothing is retried (a stream's tokens may have been passed on)."""
        endpoint = self._endpoint
        headers = {"X-Request-Id": request_id} if request_id else None
        attempt = 0
        while True:
            try:
                request = self.client.build_request(method, path, json=body, headers=headers)
                response = await self.client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as error:
                failure: _TransientError | CotTransferError = _TransientError(_unreachable(error, endpoint.base_url))
            except httpx.TransportError as error:
                raise _unreachable(error, endpoint.base_url) from None
            else:
                if response.is_success:
                    try:
                        yield response
                    finally:
                        await response.aclose()
                    return
                await response.aread()
                await response.aclose()
                failure = error_for_response(response, self._config, self._secret)
            if not isinstance(failure, _TransientError):
                raise failure
            if attempt >= endpoint.max_retries:
                raise failure.error
            delay = backoff_s(attempt, endpoint.retry_initial_backoff_s, endpoint.retry_max_backoff_s)
            if failure.retry_after_s is not None:
                delay = min(max(delay, failure.retry_after_s), endpoint.retry_max_backoff_s)
            logger.warning(
                "%s %s: %s; retry %d of %d in %.2f s",
                method,
                path,
                failure.error.message,
                attempt + 1,
                endpoint.max_retries,
                delay,
            )
            attempt += 1
            await self._sleep(delay)

    def completion_body(self, request: GenerationRequest) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self._config.model,
            "prompt": list(request.prompt_token_ids),
            "n": request.n,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            # vLLM's extension: the generated token ids beside the text (others ignore it).
            "return_token_ids": True,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.stream_deltas:
            body["stream"] = True
        return body

    async def generate(self, request: GenerationRequest, request_id: str) -> AsyncIterator[GenerationOutput]:
        body = self.completion_body(request)
        flight = _InFlight(request.n)
        self._in_flight[request_id] = flight
        try:
            async with self._open("POST", f"{self._api_prefix}/completions", body, request_id) as response:
                flight.response = response
                if request.stream_deltas:
                    async for output in self._stream_outputs(response, request_id, request.n):
                        yield output
                else:
                    await response.aread()
                    yield self._final_output(response, request_id)
        except httpx.TransportError as error:
            # The connection broke after the server had answered: not retried (tokens went out).
            raise _unreachable(error, self._endpoint.base_url) from None
        finally:
            self._in_flight.pop(request_id, None)

    def _final_output(self, response: httpx.Response, request_id: str) -> GenerationOutput:
        try:
            choices = response.json()["choices"]
            samples = [self._sample(choice) for choice in choices]
        except (ValueError, KeyError, TypeError):
            raise UnavailableError(
                f"the server at {self._endpoint.base_url} answered the completion with a body that is not a completion"
            ) from None
        return GenerationOutput(request_id=request_id, samples=samples, finished=True)

    def _sample(self, choice: Mapping[str, Any]) -> SampleOutput:
        text = str(choice.get("text") or "")
        token_ids = choice.get("token_ids")
        if token_ids is None:
            # A server without vLLM's return_token_ids: the ids are the text re-tokenised here
            # (exact for the whole text; a stream's deltas may split a character differently).
            if self._returns_token_ids:
                logger.warning("the server at %s returns no token ids; re-tokenising its text", self._endpoint.base_url)
                self._returns_token_ids = False
            token_ids = self.tokenizer.encode(text) if text else []
        return SampleOutput(
            index=int(choice.get("index", 0)),
            text=text,
            token_ids=[int(token_id) for token_id in token_ids],
            finish_reason=choice.get("finish_reason"),
        )

    async def _stream_outputs(
        self, response: httpx.Response, request_id: str, n: int
    ) -> AsyncIterator[GenerationOutput]:
        finished: set[int] = set()
        async for event in server_sent_events(response.aiter_lines()):
            if event == "[DONE]":
                return
            try:
                chunk = json.loads(event)
            except ValueError:
                raise UnavailableError(f"the server at {self._endpoint.base_url} streamed a malformed event") from None
            if isinstance(chunk, dict) and "error" in chunk:
                # vLLM reports a failure after the stream started as an error event.
                message, _ = _error_text(httpx.Response(500, json=chunk), self._secret)
                raise UnavailableError(f"the server at {self._endpoint.base_url} failed mid-stream: {message}")
            choices = chunk.get("choices") or [] if isinstance(chunk, dict) else []
            if not choices:
                continue  # e.g. a usage-only chunk
            samples = [self._sample(choice) for choice in choices]
            finished.update(sample.index for sample in samples if sample.finish_reason is not None)
            yield GenerationOutput(request_id=request_id, samples=samples, finished=len(finished) >= n)

    async def abort(self, request_id: str) -> None:
        """Closes the request's connection: vLLM aborts a request whose client went away."""
        flight = self._in_flight.pop(request_id, None)
        if flight is not None and flight.response is not None:
            await flight.response.aclose()


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines; comments,
    ``event:``, ``id:`` and ``retry:`` fields skipped)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _local_tokenizer(folder: str) -> PromptTokenizer:
    from transformers import AutoTokenizer

    from cot_transfer.engine.vllm_engine import HuggingFaceTokenizer

    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(folder))


class ServerTokenizer:
    """``PromptTokenizer`` on the server's ``/tokenize``, ``/detokenize`` and ``/tokenizer_info`` (vLLM).

    The interface is synchronous (prompts are built and CoTs cut in plain functions), so calls
    are blocking HTTP requests, cached; each costs a round trip to the server the first time.
    """

    def __init__(
        self,
        endpoint: OpenAIEndpointConfig,
        model: str,
        headers: Mapping[str, str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._model = model
        self._client = httpx.Client(
            base_url=endpoint.server_root,
            headers=dict(headers),
            timeout=httpx.Timeout(endpoint.read_timeout_s, connect=endpoint.connect_timeout_s),
            transport=transport,
        )
        self._special_ids: frozenset[int] = frozenset()
        self._encoded: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._decoded: OrderedDict[tuple[int, ...], str] = OrderedDict()
        # Cuts run on worker threads: the caches are shared with the event loop's calls.
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(path, json={"model": self._model, **body})
        except httpx.TransportError as error:
            raise _unreachable(error, self._endpoint.base_url) from None
        if response.status_code == 404 and path != "/tokenizer_info":
            raise UnavailableError(
                f"the server at {self._endpoint.base_url} has no {path}; set engine.endpoint.tokenizer to a local"
                " folder with the model's tokenizer"
            )
        if not response.is_success:
            message, _ = _error_text(response, "")
            raise UnavailableError(
                f"the server at {self._endpoint.base_url} refused {path} (HTTP {response.status_code}): {message}"
            )
        return response.json()

    def load_special_ids(self) -> None:
        """The special tokens' ids, from ``/tokenizer_info`` (vLLM: ``--enable-tokenizer-info-endpoint``)."""
        try:
            response = self._client.get("/tokenizer_info")
        except httpx.TransportError as error:
            raise _unreachable(error, self._endpoint.base_url) from None
        if response.status_code == 404:
            raise InvalidArgumentError(
                "engine.endpoint.tokenizer",
                f"'server' needs the server's /tokenizer_info (vllm serve --enable-tokenizer-info-endpoint), which"
                f" {self._endpoint.base_url} does not have; give a local folder with the model's tokenizer instead",
            )
        if not response.is_success:
            message, _ = _error_text(response, "")
            raise UnavailableError(f"the server at {self._endpoint.base_url} refused /tokenizer_info: {message}")
        self._special_ids = frozenset(special_ids_of(response.json(), self.encode))

    def encode(self, text: str) -> list[int]:
        with self._lock:
            cached = self._encoded.get(text)
        if cached is None:
            cached = tuple(self._post("/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"])
            with self._lock:
                _remember(self._encoded, text, cached)
        return list(cached)

    def decode(self, token_ids: Sequence[int]) -> str:
        key = tuple(int(token_id) for token_id in token_ids if int(token_id) not in self._special_ids)
        with self._lock:
            cached = self._decoded.get(key)
        if cached is None:
            cached = str(self._post("/detokenize", {"tokens": list(key)})["prompt"]) if key else ""
            with self._lock:
                _remember(self._decoded, key, cached)
        return cached

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def render_problem(self, problem: str, template_kwargs: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": problem}], "add_generation_prompt": True}
        if template_kwargs:
            body["chat_template_kwargs"] = dict(template_kwargs)
        ids = self._post("/tokenize", body)["tokens"]
        return str(self._post("/detokenize", {"tokens": ids})["prompt"])


def special_ids_of(info: Mapping[str, Any], encode: Callable[[str], list[int]]) -> set[int]:
    """Special-token ids from a ``/tokenizer_info`` body (the tokenizer's init kwargs), as a Hugging
    Face tokenizer's ``all_special_ids`` has them: the named tokens (eos, bos, pad, ...) and the
    additional special tokens, each looked up as a single token. (vLLM sends ``added_tokens_decoder``
    as bare strings, without their special flag, so it cannot say more.)"""
    texts: list[Any] = [info.get(key) for key in _NAMED_SPECIAL_TOKENS]
    for key in ("additional_special_tokens", "extra_special_tokens"):
        listed = info.get(key)
        if isinstance(listed, Mapping):
            listed = list(listed.values())
        if isinstance(listed, list):
            texts.extend(listed)
    ids: set[int] = set()
    for text in texts:
        if isinstance(text, Mapping):
            text = text.get("content")
        if isinstance(text, str) and text:
            encoded = encode(text)
            if len(encoded) == 1:
                ids.add(encoded[0])
    return ids


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    if len(cache) > _TOKENIZER_CACHE_ENTRIES:
        cache.popitem(last=False)
