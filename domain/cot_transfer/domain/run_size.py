"""The size of a ``Transfer.Run`` as the service's limits count it: the service refuses a run that
may draw more than ``limits.max_samples_per_run`` samples, and the client splits its problems into
runs under that cap (GetInfo reports it), by this one count."""

from __future__ import annotations

from cot_transfer.domain.requests import ResumedProblem
from cot_transfer.domain.sampling_plan import SamplingPlan
from cot_transfer.domain.steps import CutMode


def row_samples_at_most(n: int, plan: SamplingPlan | None) -> int:
    """The most samples one row draws: ``n``, or under a sampling plan its ``n_max`` (what brute
    force draws for every row)."""
    return plan.n_max if plan is not None else n


def cuts_counted(cut: CutMode, fractions: int, max_steps: int) -> int:
    """The cuts a fresh problem is counted at: its fractions, or for a CoT cut after every step
    (every-step, search) the most steps a CoT may have (``max_steps``), since its real number is
    known only once the CoT is written."""
    return max_steps if cut.cuts_every_step and max_steps > 0 else fractions


def problem_row_count(resumed: ResumedProblem | None, cuts: int, receiver_modes: int) -> int:
    """A problem's rows in a run: a fresh one has each of ``cuts`` for each (receiver, mode); a
    resumed one its missing rows, or every row of its stored prefixes."""
    if resumed is not None and resumed.rows:
        return len(resumed.rows)
    if resumed is not None and resumed.prefixes:
        return len(resumed.prefixes) * receiver_modes
    return cuts * receiver_modes
