"""The served engine and the benchmarks' engines start from one mapping of the engine config."""

from dataclasses import fields

from vllm.engine.arg_utils import AsyncEngineArgs

from cot_transfer.engine.config import EngineConfig
from cot_transfer.engine.vllm_engine import vllm_engine_arguments


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
