"""The service's graders: the domain's graders with the math grader's equivalence bound to the
worker pool, and every comparison that fails (error, timeout, refused expression) logged and
counted in ``cot_transfer_grader_errors`` before it is graded not correct."""

from __future__ import annotations

import logging

from cot_transfer.domain import answers
from cot_transfer.domain.answers import Grader, MathEquivalence
from cot_transfer.serving.common.metrics import NO_METRICS, ServiceMetrics
from cot_transfer.serving.replicas.math_equivalence import MathEquivalencePool, shared_pool
from cot_transfer.serving.replicas.math_outcome import Outcome

_logger = logging.getLogger(__name__)


def math_equivalence(pool: MathEquivalencePool, metrics: ServiceMetrics = NO_METRICS) -> MathEquivalence:
    def equivalent(extracted: str, reference: str) -> bool:
        comparison = pool.compare(extracted, reference)
        if comparison.outcome not in (Outcome.EQUIVALENT, Outcome.DIFFERENT):
            metrics.grader_error("math", comparison.outcome.value)
            _logger.warning(
                "math grader: %s comparing %.80r with reference %.80r (%s); graded not correct",
                comparison.outcome.value,
                extracted,
                reference,
                comparison.detail,
            )
        return comparison.equivalent

    return equivalent


def service_grader(name: str, metrics: ServiceMetrics = NO_METRICS, pool: MathEquivalencePool | None = None) -> Grader:
    """The grader called ``name``; the math grader compares in ``pool`` (the process's own by
    default, started on the first comparison)."""
    if (name or answers.DEFAULT_GRADER) != "math":
        return answers.get_grader(name)
    return answers.get_grader(name, math_equivalence(pool or shared_pool(), metrics))
