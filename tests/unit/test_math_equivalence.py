"""The service's math grader: math-verify comparisons in a kill-on-timeout worker pool, and
failed comparisons logged and counted rather than silently graded wrong."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cot_transfer.domain.answers import grade
from cot_transfer.serving.common.metrics import NO_METRICS
from cot_transfer.serving.replicas import math_compare
from cot_transfer.serving.replicas.graders import service_grader
from cot_transfer.serving.replicas.math_compare import compare_math
from cot_transfer.serving.replicas.math_equivalence import MathEquivalencePool
from cot_transfer.serving.replicas.math_outcome import Comparison, Outcome
from tests.fresh_interpreter import run_fresh


class _RecordingMetrics:
    """NO_METRICS, except that grader errors are recorded."""

    def __init__(self) -> None:
        self.grader_errors: list[tuple[str, str]] = []

    def grader_error(self, grader: str, reason: str) -> None:
        self.grader_errors.append((grader, reason))

    def __getattr__(self, name: str) -> object:
        return getattr(NO_METRICS, name)


@pytest.fixture(scope="module")
def fast_pool() -> Iterator[MathEquivalencePool]:
    pool = MathEquivalencePool(max_workers=1, timeout_seconds=1.0)
    yield pool
    pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        r"10^{10^{10}}",
        r"9^{9^{9^{9}}}",
        r"(10^{10})!",
        r"(x+1)^{10^{10}}",
        r"\frac{",
        "}}}{{{",
        r"\sqrt[",
        "x" * 5000,
        "1/0",
        r"\begin{pmatrix}",
    ],
)
def test_math_grader_never_raises_or_hangs_on_hostile_answers(answer: str) -> None:
    started = time.monotonic()
    assert service_grader("math").is_correct(answer, "5") is False
    assert time.monotonic() - started < 5


def test_a_runaway_comparison_is_cut_off_counted_and_the_pool_recovers(fast_pool: MathEquivalencePool) -> None:
    metrics = _RecordingMetrics()
    grader = service_grader("math", metrics, fast_pool)  # type: ignore[arg-type]
    assert grader.is_correct(r"\frac{1}{2}", "0.5") is True  # the worker is up before the clock starts
    started = time.monotonic()
    # Neither guard catches this binomial; sympy would compute it for hours.
    assert grader.is_correct(r"\binom{10^{9}}{5 \cdot 10^{8}}", "5") is False
    assert time.monotonic() - started < 4
    assert metrics.grader_errors == [("math", "timeout")]
    assert grader.is_correct(r"\frac{1}{2}", "0.5") is True


def test_a_math_verify_exception_is_logged_counted_and_graded_not_correct(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_verify(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("sympy fell over")

    monkeypatch.setattr(math_compare, "verify", failing_verify)
    metrics = _RecordingMetrics()
    # In-process, so the patched verify is the one that runs.
    grader = service_grader("math", metrics, MathEquivalencePool(max_workers=1, in_process=True))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="cot_transfer.serving.replicas.graders"):
        assert grader.is_correct(r"\frac{1}{2}", "0.5") is False
    assert metrics.grader_errors == [("math", "error")]
    assert "sympy fell over" in caplog.text


def test_a_refused_expression_is_counted() -> None:
    metrics = _RecordingMetrics()
    grader = service_grader("math", metrics, MathEquivalencePool(max_workers=1, in_process=True))  # type: ignore[arg-type]
    assert grader.is_correct(r"10^{10^{10}}", "5") is False
    assert metrics.grader_errors == [("math", "refused")]


def test_a_comparison_that_differs_is_no_error() -> None:
    metrics = _RecordingMetrics()
    grader = service_grader("math", metrics, MathEquivalencePool(max_workers=1, in_process=True))  # type: ignore[arg-type]
    assert grade(grader, r"\boxed{\frac{1}{3}}", "0.5").correct is False
    assert metrics.grader_errors == []


def test_in_process_comparison_outcomes() -> None:
    assert compare_math(r"\frac{1}{2}", "0.5") == Comparison(Outcome.EQUIVALENT)
    assert compare_math("0.6", "0.5") == Comparison(Outcome.DIFFERENT)
    assert compare_math(r"10^{10^{10}}", "5").outcome is Outcome.REFUSED
    assert compare_math("Monday", "monday").equivalent


def test_pool_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathEquivalencePool(max_workers=1, timeout_seconds=0)
    with pytest.raises(ValueError, match="max_workers"):
        MathEquivalencePool(max_workers=0)


def test_math_grader_works_off_the_main_thread() -> None:
    # math-verify's default signal-based timeouts raise outside the main thread.
    grader = service_grader("math")

    def grade_in_worker(answer: str) -> tuple[bool, bool]:
        return threading.current_thread() is threading.main_thread(), grader.is_correct(answer, "0.5")

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(grade_in_worker, [r"\frac{1}{2}", "1/2", "50\\%", "0.6"]))
    assert [on_main for on_main, _ in results] == [False] * 4
    assert [correct for _, correct in results] == [True, True, True, False]


def test_the_serving_process_does_not_import_sympy_to_compare() -> None:
    code = (
        "import sys\n"
        "from cot_transfer.serving.replicas.graders import service_grader\n"
        "assert service_grader('math').is_correct('1/2', '0.5')\n"
        "assert 'sympy' not in sys.modules, 'the comparison ran in this process'\n"
    )
    run_fresh(code)
