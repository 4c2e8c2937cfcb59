"""The messages and enum tables that the client and the service edge both convert.

A ``Prefix`` goes out in a ``StrongCot`` and comes back in a resumed ``Problem``; a ``Completion``
is written by the edge and read by the client; answer modes and cut points are named the same
on both sides. Everything one side alone converts stays in that side's module
(``cot_transfer.client.convert``, ``cot_transfer.serving.edge.decode`` / ``encode``).
"""

from __future__ import annotations

from cot_transfer.domain.receivers import FORCE_ANSWER, FREE
from cot_transfer.domain.requests import GradedCompletion, Prefix
from cot_transfer.domain.steps import CutMode, StepBoundary
from cot_transfer.v1 import cot_transfer_pb2 as pb

MODE_TO_PROTO: dict[str, pb.AnswerMode] = {FREE: pb.ANSWER_MODE_FREE, FORCE_ANSWER: pb.ANSWER_MODE_FORCE_ANSWER}
MODE_FROM_PROTO: dict[int, str] = {value: name for name, value in MODE_TO_PROTO.items()}

CUT_TO_PROTO: dict[CutMode, pb.CutMode] = {
    CutMode.TOKEN: pb.CUT_MODE_TOKEN,
    CutMode.STEP: pb.CUT_MODE_STEP,
    CutMode.EVERY_STEP: pb.CUT_MODE_EVERY_STEP,
    CutMode.SEARCH: pb.CUT_MODE_SEARCH,
}
STEP_BOUNDARY_TO_PROTO: dict[StepBoundary, pb.StepBoundary] = {
    StepBoundary.LINE: pb.STEP_BOUNDARY_LINE,
    StepBoundary.SENTENCE: pb.STEP_BOUNDARY_SENTENCE,
}
# Unspecified is the default: token cuts on line boundaries.
CUT_FROM_PROTO: dict[int, CutMode] = {
    pb.CUT_MODE_UNSPECIFIED: CutMode.TOKEN,
    **{value: mode for mode, value in CUT_TO_PROTO.items()},
}
STEP_BOUNDARY_FROM_PROTO: dict[int, StepBoundary] = {
    pb.STEP_BOUNDARY_UNSPECIFIED: StepBoundary.LINE,
    **{value: boundary for boundary, value in STEP_BOUNDARY_TO_PROTO.items()},
}


def prefix_to_proto(prefix: Prefix) -> pb.Prefix:
    return pb.Prefix(
        fraction=prefix.fraction,
        text=prefix.text,
        num_tokens=prefix.num_tokens,
        cot_num_tokens=prefix.cot_num_tokens,
        token_ids=prefix.token_ids,
        # None leaves the optional fields unset: not judged.
        answer_in_prefix=prefix.answer_in_prefix,
        answer_stated_in_prefix=prefix.answer_stated_in_prefix,
        num_steps=prefix.num_steps,
    )


def leak_flag(message: pb.Prefix | pb.FractionResult, name: str) -> bool | None:
    # Unset by a service from before leaks were judged (or before the strict flag): unknown, not "no leak".
    return bool(getattr(message, name)) if message.HasField(name) else None


def prefix_from_proto(prefix: pb.Prefix) -> Prefix:
    return Prefix(
        prefix.fraction,
        prefix.text,
        prefix.num_tokens,
        prefix.cot_num_tokens,
        token_ids=tuple(prefix.token_ids),
        answer_in_prefix=leak_flag(prefix, "answer_in_prefix"),
        answer_stated_in_prefix=leak_flag(prefix, "answer_stated_in_prefix"),
        num_steps=prefix.num_steps,
    )


def completion_to_proto(completion: GradedCompletion) -> pb.Completion:
    return pb.Completion(
        text=completion.text,
        extracted_answer=completion.extracted_answer or "",
        correct=completion.correct,
        num_tokens=completion.num_tokens,
        finish_reason=completion.finish_reason,
    )


def completion_from_proto(completion: pb.Completion) -> GradedCompletion:
    return GradedCompletion(
        text=completion.text,
        extracted_answer=completion.extracted_answer or None,
        correct=completion.correct,
        num_tokens=completion.num_tokens,
        finish_reason=completion.finish_reason,
    )
