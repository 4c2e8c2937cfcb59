"""The reasoning fields on the wire and on disk: final answer, finish reason, truncation flag and
the prefix's token ids survive the edge, the client's decoding and strong.jsonl."""

from __future__ import annotations

from pathlib import Path

import pytest

from cot_transfer.client.convert import strong_event_from_proto, transfer_event_from_proto
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.requests import Prefix, StrongAnswer, StrongCot
from cot_transfer.experiment.run_folder import RunFolder, _RowWriter
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.edge import decode, encode
from cot_transfer.v1 import cot_transfer_pb2 as pb

CONFIG = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
PREFIX = Prefix(0.5, "3×4", 2, 4, token_ids=(17, 230))
COT = StrongCot(
    "p1",
    "3×4 → 12",
    "12",
    True,
    4,
    (PREFIX,),
    final_text="\\boxed{12}",
    finish_reason="stop",
    reasoning_truncated=False,
)


def test_strong_events_carry_the_final_answer_and_the_truncation_flag() -> None:
    for event in (
        PREFIX,
        StrongAnswer("3×4 → 12", "12", 4, "stop", final_text="\\boxed{12}"),
        StrongAnswer("3×4", None, 2, "length", reasoning_truncated=True),
    ):
        wire = encode.strong_event_to_proto(event).SerializeToString()
        assert strong_event_from_proto(pb.StreamPrefixesResponse.FromString(wire)) == event


def test_the_run_stream_flags_a_truncated_cot() -> None:
    truncated = StrongCot("p2", "3×", None, False, 2, (), finish_reason="length", reasoning_truncated=True)
    for cot in (COT, truncated):
        wire = encode.transfer_event_to_proto(cot).SerializeToString()
        assert pb.RunResponse.FromString(wire).strong_cot.reasoning_truncated is cot.reasoning_truncated
        assert transfer_event_from_proto(pb.RunResponse.FromString(wire)) == cot


def test_prefix_token_ids_reach_the_completion_request() -> None:
    message = pb.CompleteRequest(problem="3×4", prefix="3×4", n=2, reference_answer="12", prefix_token_ids=[17, 230])
    assert decode.completion_request_from_proto(message, CONFIG).prefix_token_ids == (17, 230)
    with pytest.raises(InvalidArgumentError, match=r"prefix_token_ids\[1\]"):
        decode.completion_request_from_proto(
            pb.CompleteRequest(problem="3×4", prefix="3×4", n=2, reference_answer="12", prefix_token_ids=[1, -2]),
            CONFIG,
        )


def test_strong_jsonl_keeps_the_reasoning_fields(tmp_path: Path) -> None:
    writer = _RowWriter(tmp_path, "hash", None)
    writer.add_strong(COT)
    writer.close()
    assert RunFolder(tmp_path).load_state("hash").strong["p1"] == COT


def test_get_info_reports_each_models_reasoning_format() -> None:
    config = CONFIG.model_copy(deep=True)
    config.strong.reasoning_format = "gpt_oss"
    config.weak.reasoning_format = "qwen3"
    formats = {model.name: model.reasoning_format for model in encode.service_info_to_proto(config).models}
    assert formats == {config.strong.engine.name: "gpt_oss", config.weak.engine.name: "qwen3"}
