"""The wire side of cut points, imported CoTs and kept answers: validated at the edge."""

from __future__ import annotations

from typing import Any

from cot_transfer.domain.errors import InvalidArgumentError, NotFoundError
from cot_transfer.domain.requests import FractionResult
from cot_transfer.domain.steps import EVERY_STEP_FRACTIONS, CutMode, StepBoundary
from cot_transfer.serving.config import ServingConfig
from cot_transfer.serving.reasoning import resolve_format
from cot_transfer.v1 import cot_transfer_pb2 as pb

CUT_FROM_PROTO = {
    pb.CUT_MODE_UNSPECIFIED: CutMode.TOKEN,
    pb.CUT_MODE_TOKEN: CutMode.TOKEN,
    pb.CUT_MODE_STEP: CutMode.STEP,
    pb.CUT_MODE_EVERY_STEP: CutMode.EVERY_STEP,
}
BOUNDARY_FROM_PROTO = {
    pb.STEP_BOUNDARY_UNSPECIFIED: StepBoundary.LINE,
    pb.STEP_BOUNDARY_LINE: StepBoundary.LINE,
    pb.STEP_BOUNDARY_SENTENCE: StepBoundary.SENTENCE,
}
CUT_TO_PROTO = {mode: value for value, mode in CUT_FROM_PROTO.items() if value != pb.CUT_MODE_UNSPECIFIED}
BOUNDARY_TO_PROTO = {
    boundary: value for value, boundary in BOUNDARY_FROM_PROTO.items() if value != pb.STEP_BOUNDARY_UNSPECIFIED
}


def cut_options_from_proto(message: pb.RunRequest, config: ServingConfig) -> dict[str, Any]:
    """The TransferRequest fields of cut points, imported CoTs and kept answers."""
    if message.cut not in CUT_FROM_PROTO:
        raise InvalidArgumentError("cut", f"unknown cut mode {message.cut}; token, step or every_step")
    if message.step_boundary not in BOUNDARY_FROM_PROTO:
        raise InvalidArgumentError("step_boundary", f"unknown step boundary {message.step_boundary}; line or sentence")
    # Imported CoTs are cut on the strong model's replica, with its tokenizer (no generation).
    if message.cot_tokenizer and message.cot_tokenizer != config.strong.engine.name:
        served = {config.strong.engine.name, config.weak.engine.name}
        if message.cot_tokenizer not in served:
            raise NotFoundError(f"cot_tokenizer: no served model {message.cot_tokenizer!r}")
        raise InvalidArgumentError(
            "cot_tokenizer", f"imported CoTs are cut with the strong model's tokenizer ({config.strong.engine.name!r})"
        )
    return {
        "cut": CUT_FROM_PROTO[message.cut],
        "step_boundary": BOUNDARY_FROM_PROTO[message.step_boundary],
        "keep_completions": message.keep_completions,
        "max_cot_chars": config.limits.max_text_chars,
        "max_steps": config.limits.max_fractions,
    }


def every_step_fractions(message: pb.RunRequest) -> tuple[float, ...]:
    """An every-step run's summary fractions (its own ``fractions`` are not used); () otherwise."""
    return EVERY_STEP_FRACTIONS if message.cut == pb.CUT_MODE_EVERY_STEP else ()


def cot_from_proto(message: pb.Problem, field: str) -> tuple[str | None, str]:
    """A problem's imported CoT and its format name. The CoT's length is checked per problem
    (a long one is its problem's error); an unknown format is the request's."""
    cot = message.cot if message.HasField("cot") else None
    name = message.cot_format or "plain"
    try:
        resolve_format(name)
    except ValueError as error:
        raise InvalidArgumentError(f"{field}.cot_format", str(error)) from None
    return cot, name


def kept_answers_to_proto(result: FractionResult) -> dict[str, Any]:
    """The FractionResult wire fields of kept answers and step cuts."""
    return {
        "num_steps": result.num_steps,
        "answer_counts": [pb.AnswerCount(answer=answer, count=count) for answer, count in result.answer_counts],
        "completions": [
            pb.Completion(
                text=completion.text,
                extracted_answer=completion.extracted_answer or "",
                correct=completion.correct,
                num_tokens=completion.num_tokens,
                finish_reason=completion.finish_reason,
            )
            for completion in result.completions
        ],
    }
