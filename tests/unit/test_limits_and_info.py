"""Input size before work, and what GetInfo says for resume integrity (caps, defaults, fingerprints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cot_transfer.client.convert import service_info_from_proto
from cot_transfer.domain.errors import InvalidArgumentError
from cot_transfer.domain.sampling import SamplingParams
from cot_transfer.serving.common.serving_config import ServingConfig
from cot_transfer.serving.edge import decode, encode
from cot_transfer.serving.replicas.fingerprint import model_fingerprint
from cot_transfer.v1 import cot_transfer_pb2 as pb

BASE = ServingConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "local-cpu.yaml")
CAP = 1000
CONFIG = BASE.model_copy(update={"limits": BASE.limits.model_copy(update={"max_text_chars": CAP})})
TOO_LONG = "x" * (CAP + 1)
FIVE_MB = "7" * (5 * 2**20)


@pytest.mark.parametrize(
    ("convert", "message", "field"),
    [
        (decode.prefix_request_from_proto, pb.StreamPrefixesRequest(problem=TOO_LONG, fractions=[1.0]), "problem"),
        (decode.completion_request_from_proto, pb.CompleteRequest(problem=TOO_LONG, reference_answer="3"), "problem"),
        (
            decode.completion_request_from_proto,
            pb.CompleteRequest(problem="1+2", prefix=TOO_LONG, reference_answer="3"),
            "prefix",
        ),
        (
            decode.completion_request_from_proto,
            pb.CompleteRequest(problem="1+2", reference_answer=TOO_LONG),
            "reference_answer",
        ),
        (
            decode.transfer_request_from_proto,
            pb.RunRequest(
                problems=[
                    pb.Problem(id="a", problem="1", answer="1"),
                    pb.Problem(id="b", problem=TOO_LONG, answer="3"),
                ],
                fractions=[1.0],
                n=1,
            ),
            "problems[1].problem",
        ),
        (
            decode.transfer_request_from_proto,
            pb.RunRequest(problems=[pb.Problem(id="a", problem="1+2", answer=TOO_LONG)], fractions=[1.0], n=1),
            "problems[0].answer",
        ),
        (
            decode.transfer_request_from_proto,
            pb.RunRequest(problems=[pb.Problem(id=TOO_LONG, problem="1+2", answer="3")], fractions=[1.0], n=1),
            "problems[0].id",
        ),
    ],
)
def test_a_text_past_the_cap_is_refused_naming_the_field_and_the_cap(
    convert: object, message: object, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        convert(message, CONFIG)  # type: ignore[operator]
    assert caught.value.field == field
    assert f"at most {CAP} characters" in caught.value.message
    assert "limits.max_text_chars" in caught.value.message


def test_a_text_at_the_cap_passes() -> None:
    request = decode.completion_request_from_proto(
        pb.CompleteRequest(problem="x" * CAP, prefix="y" * CAP, reference_answer="3", n=1), CONFIG
    )
    assert len(request.problem) == CAP


def test_a_five_megabyte_problem_is_refused_by_the_default_cap_at_the_edge() -> None:
    assert BASE.limits.max_text_chars < len(FIVE_MB)
    with pytest.raises(InvalidArgumentError, match="problem: at most"):
        decode.completion_request_from_proto(pb.CompleteRequest(problem=FIVE_MB, reference_answer="3"), BASE)


def test_multi_byte_text_is_capped_in_characters_not_bytes() -> None:
    text = "\U0001f600" * CAP  # 4 bytes each in UTF-8
    request = decode.completion_request_from_proto(pb.CompleteRequest(problem=text, reference_answer="3", n=1), CONFIG)
    assert request.problem == text


def test_get_info_reports_the_cap_the_sampling_defaults_and_each_models_fingerprint() -> None:
    message = encode.service_info_to_proto(CONFIG, {CONFIG.strong.engine.name: "aaaa", CONFIG.weak.engine.name: "bbbb"})
    info = service_info_from_proto(pb.GetInfoResponse.FromString(message.SerializeToString()))
    assert info.max_text_chars == CAP
    strong = CONFIG.strong.sampling
    assert info.strong_sampling_defaults == SamplingParams(
        strong.temperature, strong.top_p, strong.max_tokens, strong.seed
    )
    weak = CONFIG.weak.sampling
    assert info.weak_sampling_defaults == SamplingParams(weak.temperature, weak.top_p, weak.max_tokens, weak.seed)
    prints = {model.name: model.fingerprint for model in info.models}
    assert prints == {CONFIG.strong.engine.name: "aaaa", CONFIG.weak.engine.name: "bbbb"}
    roles = {model.name: model.roles for model in info.models}
    assert roles[CONFIG.strong.engine.name] == ("strong",)


def test_an_older_service_that_reports_no_defaults_reads_as_none() -> None:
    info = service_info_from_proto(pb.GetInfoResponse(strong_model="s", weak_model="w"))
    assert info.strong_sampling_defaults is None and info.models == () and info.max_text_chars == 0


def _model_folder(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"hidden_size": 64}))
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "model.safetensors").write_bytes(b"\0" * 100)
    return root


def test_the_fingerprint_changes_with_config_tokenizer_and_weights_only(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    first = model_fingerprint(folder)
    assert len(first) == 16 and first == model_fingerprint(folder)
    (folder / "README.md").write_text("notes")  # not part of the model
    assert model_fingerprint(folder) == first
    (folder / "model.safetensors").write_bytes(b"\0" * 101)
    resized = model_fingerprint(folder)
    assert resized != first
    (folder / "tokenizer.json").write_text('{"model": {"x": 1}}')
    retokenized = model_fingerprint(folder)
    assert retokenized != resized
    (folder / "config.json").write_text(json.dumps({"hidden_size": 128}))
    assert model_fingerprint(folder) not in {first, resized, retokenized}


def test_a_path_that_is_no_model_folder_has_no_fingerprint(tmp_path: Path) -> None:
    assert model_fingerprint(tmp_path / "missing") == ""
