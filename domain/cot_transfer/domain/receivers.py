"""Receivers and answer modes: who completes a run's prefixes, and how.

A run names one or more receivers (served model names); each completes every prefix of the run
in each answer mode. With the strong model as receiver the run measures its self-potential, with
a weak model transfer. Results are keyed by (receiver, mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

FREE = "free"
FORCE_ANSWER = "force_answer"
# The order the modes are reported in.
ANSWER_MODES = (FREE, FORCE_ANSWER)

ReceiverMode = tuple[str, str]


def check_mode(value: str) -> str:
    if value not in ANSWER_MODES:
        raise ValueError(f"unknown answer mode {value!r}; modes: {', '.join(ANSWER_MODES)}")
    return value


def unique_in_order(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` without repeats, first occurrence kept: asking twice measures once."""
    return tuple(dict.fromkeys(values))


def receiver_modes(receivers: Sequence[str], modes: Sequence[str]) -> tuple[ReceiverMode, ...]:
    """Every (receiver, mode) of a run, receivers outermost, in the order asked."""
    return tuple((receiver, mode) for receiver in receivers for mode in modes)


def primary_receiver(receivers: Sequence[str], weak_models: Iterable[str]) -> str:
    """The receiver whose free-mode results fill a summary's top-level fields: the run's first
    weak receiver, else its first (a run of the strong model on itself alone)."""
    weak = set(weak_models)
    return next((receiver for receiver in receivers if receiver in weak), receivers[0] if receivers else "")


def primary_key(receivers: Sequence[str], modes: Sequence[str], weak_models: Iterable[str]) -> ReceiverMode:
    """The (receiver, mode) the top-level summary repeats: the primary receiver in free mode,
    or in the run's first mode when free was not asked."""
    mode = FREE if FREE in modes or not modes else modes[0]
    return primary_receiver(receivers, weak_models), mode
