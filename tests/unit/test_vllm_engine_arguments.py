"""The served engine and the benchmarks' engines start from one mapping of the engine config."""

import asyncio
import threading
import time
from dataclasses import fields
from typing import Any

import pytest
from vllm.engine.arg_utils import AsyncEngineArgs

from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.vllm_engine import (
    EngineStartTimeoutError,
    VLLMEngine,
    start_within,
    vllm_engine_arguments,
)


def test_unset_options_are_left_to_vllm_and_set_ones_are_passed() -> None:
    unset = vllm_engine_arguments(EngineConfig(model="/models/weak", served_name="weak"))
    assert "max_model_len" not in unset and "enable_chunked_prefill" not in unset
    assert unset["served_model_name"] == ["weak"]
    chosen = vllm_engine_arguments(
        EngineConfig(
            model="/models/weak",
            max_model_len=512,
            enable_chunked_prefill=False,
            max_num_seqs=8,
            engine_kwargs={"block_size": 32},
        )
    )
    assert chosen["max_model_len"] == 512
    assert chosen["enable_chunked_prefill"] is False
    assert chosen["max_num_seqs"] == 8
    assert chosen["block_size"] == 32


def test_every_argument_is_one_vllm_knows() -> None:
    known = {field.name for field in fields(AsyncEngineArgs)}
    arguments = vllm_engine_arguments(
        EngineConfig(model="/models/weak", max_model_len=512, enable_chunked_prefill=False)
    )
    assert set(arguments) <= known, set(arguments) - known


class _SlowEngine:
    """An engine that takes ``build_s`` seconds to build and records its shutdown."""

    def __init__(self, build_s: float = 0.0) -> None:
        self.build_s = build_s
        self.stopped = threading.Event()

    def build(self) -> Any:
        time.sleep(self.build_s)
        return self

    def shutdown(self) -> None:
        self.stopped.set()


def test_an_engine_start_past_its_timeout_fails_and_the_late_engine_is_shut_down() -> None:
    engine = _SlowEngine(build_s=0.5)

    async def start() -> None:
        with pytest.raises(EngineStartTimeoutError, match=r"did not start within 0\.1 s \(engine\.start_timeout_s\)"):
            await start_within(engine.build, 0.1, "the engine for weak")
        await asyncio.to_thread(engine.stopped.wait, 5.0)

    asyncio.run(start())
    assert engine.stopped.is_set()


def test_an_engine_start_within_its_timeout_returns_the_engine() -> None:
    engine = _SlowEngine()
    assert asyncio.run(start_within(engine.build, 5.0, "the engine")) is engine
    assert not engine.stopped.is_set()


def test_the_served_engine_takes_its_start_timeout_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = EngineConfig(model="/models/weak", served_name="weak", start_timeout_s=0.05)
    vllm_engine = VLLMEngine(config)
    monkeypatch.setattr(vllm_engine, "_build_llm", _SlowEngine(build_s=0.5).build)
    with pytest.raises(EngineStartTimeoutError, match=r"the engine for weak did not start within 0\.05 s"):
        asyncio.run(vllm_engine.start())


def test_a_cancelled_engine_start_shuts_the_late_engine_down() -> None:
    engine = _SlowEngine(build_s=0.3)

    async def start_and_cancel() -> None:
        starting = asyncio.ensure_future(start_within(engine.build, 60.0, "the engine"))
        await asyncio.sleep(0.05)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        await asyncio.to_thread(engine.stopped.wait, 5.0)

    asyncio.run(start_and_cancel())
    assert engine.stopped.is_set()
